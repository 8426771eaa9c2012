"""The real pipeline (fskd-inspect) over real DDS, driven from a separate client process.

Enrollment from images, classification of held-out NEU-CLS frames with the
input header carried through, gallery services, and bad requests that must be
refused without crashing anything or touching the gallery.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fskd_ros.core.encoder_file import default_encoder_path, read_encoder_info  # noqa: E402
from fskd_ros.core.preprocessing import load_image_file  # noqa: E402
from fskd_ros.msg import Classification  # noqa: E402
from fskd_ros.ros import qos  # noqa: E402
from fskd_ros.ros.client import PipelineClient  # noqa: E402
from fskd_ros.ros.image_conversion import rgb_to_image  # noqa: E402
import sys  # noqa: E402

from ros_helpers import Process, start_inspect, wait_until  # noqa: E402

CAMERA = "/test_camera/image_raw"
SHOTS, QUERIES = 5, 6


class Pipeline:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.gallery_path = tmp / "gallery.npz"
        self.process = start_inspect(tmp, f"camera_topic:={CAMERA}", f"gallery_path:={self.gallery_path}")
        self.client = PipelineClient()
        self.camera = self.client.node.create_publisher(Image, CAMERA, qos.IMAGE_PUBLISHER)
        self.results: Dict[tuple, Classification] = {}
        self._cond = threading.Condition()
        self.client.subscribe_classifications(self._on_result)
        try:
            self.client.wait_for_services(60.0)
        except TimeoutError:
            raise AssertionError(f"pipeline did not start:\n{self.process.log()}")
        wait_until(lambda: self.camera.get_subscription_count() > 0, 30, "encoder subscription")

    def _on_result(self, msg: Classification) -> None:
        with self._cond:
            self.results[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            self._cond.notify_all()

    def classify(self, msg: Image, stamp_sec: int, timeout: float = 10.0) -> Classification:
        msg.header.stamp = Time(sec=stamp_sec, nanosec=12345)
        msg.header.frame_id = "test_optical_frame"
        key = (stamp_sec, 12345)
        deadline = time.monotonic() + timeout
        with self._cond:
            # Best-effort camera QoS: resend until a result for this stamp arrives.
            while key not in self.results:
                self.camera.publish(msg)
                self._cond.wait(0.5)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no classification for stamp {stamp_sec}\n{self.process.log()}")
            return self.results[key]

    def close(self) -> None:
        self.client.close()
        code = self.process.stop()
        assert code in (0, -2), f"fskd-inspect exited with {code}:\n{self.process.log()}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    pipe = Pipeline(tmp_path_factory.mktemp("pipeline"))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def neu_split(neu_cls) -> Dict[str, Dict[str, List[Path]]]:
    rng = random.Random(0)
    split = {}
    for class_dir in sorted(p for p in neu_cls.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*"))
        rng.shuffle(files)
        split[class_dir.name] = {"shots": files[:SHOTS], "queries": files[SHOTS:SHOTS + QUERIES]}
    return split


def _images(paths: List[Path]) -> List[Image]:
    return [rgb_to_image(load_image_file(str(p))) for p in paths]


def test_enroll_then_classify_held_out_frames(pipeline, neu_split):
    for label, files in neu_split.items():
        reply = pipeline.client.call("enroll", label=label, images=_images(files["shots"]))
        assert reply.success, reply.message
        assert reply.shots == SHOTS
    listed = pipeline.client.call("list_classes")
    assert sorted(listed.labels) == sorted(neu_split) and set(listed.shots) == {SHOTS}
    correct, total, stamp = 0, 0, 1000
    for label, files in neu_split.items():
        for image in _images(files["queries"]):
            stamp += 1
            result = pipeline.classify(image, stamp)
            assert result.header.frame_id == "test_optical_frame"
            assert (result.header.stamp.sec, result.header.stamp.nanosec) == (stamp, 12345)
            assert result.gallery_version == listed.gallery_version
            assert result.top_labels[0] == result.label and len(result.top_labels) == 3
            assert result.encoder_id == listed.encoder_id and result.inference_ms > 0
            correct += result.label == label
            total += 1
    accuracy = correct / total
    print(f"NEU-CLS {len(neu_split)}-way {SHOTS}-shot over DDS: {accuracy:.2%} ({correct}/{total})")
    # Chance is 1/6. The shipped distilled encoder measured 47% here (docs/results.md has
    # the episodic figures); an untrained placeholder only has to beat chance.
    trained = read_encoder_info(default_encoder_path()).trained
    floor = 0.4 if trained else 1.5 / len(neu_split)
    assert accuracy >= floor, f"accuracy {accuracy:.2%} on held-out NEU-CLS frames (trained={trained})"


def test_capture_enrollment_from_live_stream(pipeline, neu_split):
    files = neu_split["scratches"]["shots"][:3]
    frames = _images(files)
    box = {}
    caller = threading.Thread(target=lambda: box.update(
        reply=pipeline.client.call("enroll", label="live_capture", capture_frames=3, capture_timeout_s=20.0)))
    caller.start()
    stamp = 5000
    while caller.is_alive():
        stamp += 1
        pipeline.classify(frames[stamp % 3], stamp)
    caller.join()
    assert box["reply"].success, box["reply"].message
    assert box["reply"].shots == 3
    assert pipeline.client.call("forget", label="live_capture").success


def test_capture_times_out_cleanly_without_frames(pipeline):
    before = pipeline.client.call("list_classes")
    reply = pipeline.client.call("enroll", label="nothing", capture_frames=2, capture_timeout_s=0.5)
    assert not reply.success and "captured 0 of 2" in reply.message
    assert pipeline.client.call("list_classes").gallery_version == before.gallery_version


def _bad_image(kind: str) -> Image:
    good = rgb_to_image(np.zeros((8, 8, 3), np.uint8))
    if kind == "encoding":
        good.encoding = "yuv422"
    elif kind == "step":
        good.step = 10
    elif kind == "size":
        good.data = bytes(good.step * good.height - 5)
    elif kind == "empty":
        good.height, good.width, good.step, good.data = 0, 0, 0, b""
    return good


@pytest.mark.parametrize("fields,reason", [
    ({"label": "x", "images": []}, "nothing to enroll"),
    ({"label": "", "images": "ok"}, "label is empty"),
    ({"label": "a" * 500, "images": "ok"}, "at most 64"),
    ({"label": "bad\nlabel", "images": "ok"}, "control characters"),
    ({"label": "x", "images": "ok", "capture_frames": 2}, "not both"),
    ({"label": "x", "images": "many"}, "at most 32"),
    ({"label": "x", "capture_frames": 100000}, "at most 32"),
    ({"label": "x", "images": "encoding"}, "unsupported encoding 'yuv422'"),
    ({"label": "x", "images": "step"}, "step 10 is smaller"),
    ({"label": "x", "images": "size"}, "expected step*height"),
    ({"label": "x", "images": "empty"}, "empty image"),
])
def test_bad_enroll_requests_are_refused_and_change_nothing(pipeline, fields, reason):
    ok = rgb_to_image(np.full((16, 16, 3), 128, np.uint8))
    images = fields.get("images", [])
    if images == "ok":
        fields["images"] = [ok]
    elif images == "many":
        fields["images"] = [ok] * 33
    elif isinstance(images, str):
        fields["images"] = [ok, _bad_image(images)]
    before = pipeline.client.call("list_classes")
    reply = pipeline.client.call("enroll", **fields)
    assert not reply.success
    assert reason in reply.message
    after = pipeline.client.call("list_classes")
    assert (after.labels, list(after.shots), after.gallery_version) == \
        (before.labels, list(before.shots), before.gallery_version)
    assert pipeline.process.alive()


def test_malformed_camera_frames_are_dropped_and_stream_continues(pipeline):
    for kind in ("encoding", "step", "size", "empty"):
        bad = _bad_image(kind)
        bad.header.stamp = Time(sec=9000, nanosec=1)
        pipeline.camera.publish(bad)
    time.sleep(0.5)
    assert pipeline.process.alive()
    assert (9000, 1) not in pipeline.results
    good = pipeline.classify(rgb_to_image(np.full((32, 32, 3), 90, np.uint8)), 9001)
    assert good.header.stamp.sec == 9001  # still classifying after the bad frames
    for stamp, encoding in ((9002, "bgr8"), (9003, "mono8")):
        frame = rgb_to_image(np.full((32, 40, 3), 60, np.uint8), encoding=encoding)
        assert pipeline.classify(frame, stamp).header.stamp.sec == stamp


def test_forget_save_load_and_refuse_corrupt_gallery(pipeline, tmp_path):
    client = pipeline.client
    for label, value in (("dark", 20), ("bright", 230)):  # independent of the shared data
        assert client.call("enroll", label=label,
                           images=[rgb_to_image(np.full((24, 24, 3), value, np.uint8))]).success
    assert not client.call("forget", label="never_enrolled").success
    saved = client.call("save_gallery", path=str(tmp_path / "copy.npz"))
    assert saved.success, saved.message
    before = client.call("list_classes")
    removed = before.labels[0]
    reply = client.call("forget", label=removed)
    assert reply.success and reply.num_classes == len(before.labels) - 1
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a gallery")
    refused = client.call("load_gallery", path=str(corrupt))
    assert not refused.success and "kept" in refused.message
    assert refused.num_classes == len(before.labels) - 1
    restored = client.call("load_gallery", path=str(tmp_path / "copy.npz"))
    assert restored.success, restored.message
    after = client.call("list_classes")
    assert sorted(after.labels) == sorted(before.labels)
    assert after.gallery_version > reply.gallery_version  # versions never go back
    assert pipeline.gallery_path.is_file()  # autosave wrote the default path


def test_annotated_image_only_while_subscribed(pipeline):
    node = pipeline.client.node
    topic = "/fskd/annotated_image"
    got = []
    sub = node.create_subscription(Image, topic, lambda m: got.append(m), qos.IMAGE_SUBSCRIPTION)
    try:
        wait_until(lambda: node.count_publishers(topic) > 0, 10, "annotated_image publisher")
        time.sleep(1.2)  # the classifier checks for watchers twice a second
        frame = rgb_to_image(np.full((48, 64, 3), 200, np.uint8))
        stamp = 7000
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            stamp += 1
            pipeline.classify(frame, stamp)
        assert got, "no annotated image while subscribed"
        assert (got[0].height, got[0].width, got[0].encoding) == (48, 64, "rgb8")
        assert got[0].header.stamp.sec > 7000
        assert not np.array_equal(np.frombuffer(bytes(got[0].data), np.uint8).reshape(48, 64, 3)[2],
                                  np.full((64, 3), 200, np.uint8))  # banner drawn
    finally:
        node.destroy_subscription(sub)


def test_readme_example_enrolls_from_another_process(pipeline, neu_split):
    files = [str(p) for p in neu_split["inclusion"]["shots"][:2]]
    example = Path(__file__).resolve().parent.parent / "examples" / "enroll_and_watch.py"
    proc = Process([sys.executable, str(example), "example_class", *files], pipeline.tmp / "example.log")
    try:
        wait_until(lambda: "True enrolled 2 shots" in proc.log(), 60, "the example's enroll reply")
        pipeline.classify(rgb_to_image(load_image_file(files[0])), 11000)
        wait_until(lambda: len(proc.log().splitlines()) > 1, 20, "a classification printed by the example")
    finally:
        proc.stop()
    assert pipeline.client.call("forget", label="example_class").success


def test_diagnostics_report_frames_rejects_and_gallery(pipeline):
    from diagnostic_msgs.msg import DiagnosticArray

    bad = _bad_image("step")
    bad.header.stamp = Time(sec=12000, nanosec=1)
    pipeline.camera.publish(bad)
    pipeline.classify(rgb_to_image(np.full((16, 16, 3), 10, np.uint8)), 12001)
    seen = {}
    sub = pipeline.client.node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: seen.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}), 10)
    try:
        wait_until(lambda: any("encoder" in k for k in seen) and any("classifier" in k for k in seen),
                   10, "diagnostics from both nodes")
    finally:
        pipeline.client.node.destroy_subscription(sub)
    encoder = next(v for k, v in seen.items() if k.startswith("/fskd/encoder"))
    classifier = next(v for k, v in seen.items() if k.startswith("/fskd/classifier"))
    assert int(encoder["frames"]) >= 1 and int(encoder["rejected_frames"]) >= 1
    assert float(encoder["latency_ms_p50"]) > 0
    assert classifier["encoder_id"] == encoder["encoder_id"] and "classes" in classifier


def test_concurrent_enrolls_neither_starve_nor_crash(pipeline):
    shots = [rgb_to_image(np.full((40, 40, 3), 30 * i, np.uint8)) for i in range(1, 4)]
    replies = {}

    def call(index: int) -> None:
        replies[index] = pipeline.client.call("enroll", timeout_s=60, label=f"concurrent_{index}", images=shots)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    pipeline.classify(rgb_to_image(np.full((32, 32, 3), 50, np.uint8)), 13000)  # frames still flow
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 30
    assert all(r.success or "retry" in r.message for r in replies.values()), \
        [r.message for r in replies.values()]
    assert sum(r.success for r in replies.values()) >= 2
    for index, reply in replies.items():
        if reply.success:
            assert pipeline.client.call("forget", label=f"concurrent_{index}").success


def test_load_gallery_with_malformed_header_is_refused(pipeline, tmp_path):
    import json

    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array(json.dumps([1, 2, 3])), shots=np.zeros((1, 4), np.float32),
             base_mean=np.zeros(4, np.float32))
    before = pipeline.client.call("list_classes")
    reply = pipeline.client.call("load_gallery", path=str(path))
    assert not reply.success and "not a JSON object" in reply.message
    assert pipeline.client.call("list_classes").gallery_version == before.gallery_version
    assert pipeline.process.alive()
