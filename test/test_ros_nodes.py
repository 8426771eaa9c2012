"""Replay node, the shared node description, the torch-free runtime, and the demo."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from fskd_ros.ros import qos  # noqa: E402
from fskd_ros.ros.client import PipelineClient  # noqa: E402
from fskd_ros.ros.description import LAUNCH_ARGUMENTS, NODES, default_params_file  # noqa: E402
from fskd_ros.ros.inspect import node_cli_args, parse_arguments  # noqa: E402
from ros_helpers import REPO_ROOT, ros_env, start_node, wait_until  # noqa: E402


def test_replay_publishes_folder_with_sources(tmp_path):
    folder = tmp_path / "frames" / "classA"
    folder.mkdir(parents=True)
    for index in range(3):
        PILImage.fromarray(np.full((20, 30, 3), index * 40, np.uint8)).save(folder / f"f{index}.png")
    (folder / "broken.png").write_bytes(b"not a png")  # skipped with a warning, not a crash
    client = PipelineClient(name="replay_probe")
    images, sources = [], []
    client.node.create_subscription(Image, "/replay_test/image", lambda m: images.append(m), qos.RESULTS)
    client.node.create_subscription(String, "/replay_test/replay/source", lambda m: sources.append(m), qos.LATCHED)
    proc = start_node("fskd_ros.ros.replay_node", tmp_path, "-r", "__ns:=/replay_test",
                      "-p", f"path:={tmp_path / 'frames'}", "-p", "rate_hz:=20.0",
                      "-p", "encoding:=bgr8", "-p", "wait_for_subscribers:=1", name="replay")
    try:
        try:
            wait_until(lambda: len(images) >= 3 and len(sources) >= 3, 30, "3 replayed frames")
        except TimeoutError:
            raise AssertionError(f"{len(images)} images, {len(sources)} sources\n{proc.log()}")
        time.sleep(0.3)
        assert len(images) == 3, proc.log()
        assert images[1].encoding == "bgr8" and (images[1].height, images[1].width) == (20, 30)
        assert np.frombuffer(bytes(images[2].data), np.uint8)[0] == 80
        meta = [json.loads(s.data) for s in sources]
        assert [Path(m["path"]).name for m in meta] == ["f0.png", "f1.png", "f2.png"]
        assert (meta[0]["sec"], meta[0]["nanosec"]) == (images[0].header.stamp.sec, images[0].header.stamp.nanosec)
        assert "broken.png" in proc.log()
    finally:
        client.close()
        proc.stop()


def test_replay_refuses_missing_path(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fskd_ros.ros.replay_node", "--ros-args",
                             "-p", f"path:={tmp_path / 'nope'}"], env=ros_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_encoder_refuses_missing_model_and_unimplemented_backend(tmp_path):
    for params, message in ((["-p", f"model:={tmp_path / 'none.onnx'}"], "encoder file not found"),
                            (["-p", "backend:=nonsense"], "unknown backend")):
        result = subprocess.run([sys.executable, "-m", "fskd_ros.ros.encoder_node", "--ros-args", *params],
                                env=ros_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr + result.stdout


def test_launch_file_and_fskd_inspect_share_one_description():
    tree = ast.parse((REPO_ROOT / "launch" / "inspect.launch.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "fskd_ros.ros.description" for alias in node.names}
    assert {"LAUNCH_ARGUMENTS", "NODES", "NAMESPACE"} <= imported
    values = parse_arguments(["camera_topic:=/cam/a", "--backend", "onnxruntime"])
    assert values["camera_topic"] == "/cam/a" and values["model"] == ""  # "" = keep the YAML value
    assert {arg.name for arg in LAUNCH_ARGUMENTS} == set(values)
    for node in NODES:
        args = node_cli_args(node, values)
        assert args[:3] == ["--ros-args", "--params-file", default_params_file()]
        assert "image:=/cam/a" in args
    with pytest.raises(SystemExit):
        parse_arguments(["not_an_argument:=1"])


def test_runtime_never_imports_torch():
    code = ("import sys; import fskd_ros.ros.encoder_node, fskd_ros.ros.classifier_node, "
            "fskd_ros.ros.replay_node, fskd_ros.ros.inspect, fskd_ros.core.backends.onnxruntime_backend, "
            "fskd_ros.core.backends.tensorrt_backend, fskd_ros.core.classifier; "
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], env=ros_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False False", result.stderr


def test_demo_runs_to_its_summary(tmp_path):
    pytest.importorskip("elpv_dataset", reason="demo data (PyPI elpv-dataset) not installed")
    result = subprocess.run([sys.executable, "-m", "fskd_ros.ros.demo", "--frames-per-class", "6",
                             "--rate", "20", "--output", str(tmp_path)], env=ros_env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_streamed"] == 12 and summary["frames_classified"] >= 10
    assert set(summary["classes"]) == {"functional", "defective"}
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["inference_ms"]["p50"] > 0
    assert "accuracy" in result.stdout


def test_rviz_config_shows_the_annotated_image():
    import yaml

    config = yaml.safe_load((REPO_ROOT / "config" / "inspect.rviz").read_text())
    topics = [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/Image" and d["Enabled"]]
    assert topics == ["/fskd/annotated_image"]


def test_params_file_values_apply_unless_a_launch_argument_overrides(tmp_path):
    """A custom YAML sets threshold and gallery_path; the gallery_path argument wins over it."""
    from diagnostic_msgs.msg import DiagnosticArray
    from ros_helpers import start_inspect

    yaml_file = tmp_path / "custom.yaml"
    yaml_file.write_text("/**:\n  ros__parameters:\n    threshold: 0.77\n"
                         f"    gallery_path: {tmp_path / 'from_yaml.npz'}\n")
    argument_gallery = tmp_path / "from_argument.npz"
    proc = start_inspect(tmp_path, f"params_file:={yaml_file}", f"gallery_path:={argument_gallery}")
    client = PipelineClient(name="params_probe")
    seen = {}
    client.node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: seen.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}), 10)
    try:
        wait_until(lambda: any("classifier" in k for k in seen), 60, f"classifier diagnostics\n{proc.log()}")
    finally:
        client.close()
        proc.stop()
    classifier = next(v for k, v in seen.items() if "classifier" in k)
    assert float(classifier["threshold"]) == pytest.approx(0.77)
    assert classifier["gallery_path"] == str(argument_gallery)
