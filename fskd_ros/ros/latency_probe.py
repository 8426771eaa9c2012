"""End-to-end ROS latency: image published -> classification received.

Starts ``fskd-inspect`` in its own process (as deployed), publishes frames from
this process one at a time, and times each until its classification arrives.
The nodes' own ``inference_ms`` (preprocessing + encoder + classifier inside
the node) is reported next to it, so the DDS overhead is the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from fskd_ros.ros.description import fastdds_profile
from fskd_ros.ros.processes import child_env, stop

CAMERA = "/latency_probe/image_raw"


def measure_ros_latency(model_path: str = "default", backend: str = "onnxruntime", frames: int = 200,
                        width: int = 640, height: int = 480, warmup: int = 20,
                        log_dir: Optional[Path] = None) -> Dict[str, float]:
    """p50/p95/mean of publish->classification latency and of the nodes' inference_ms."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile())
    from sensor_msgs.msg import Image

    from fskd_ros.ros import qos
    from fskd_ros.ros.client import PipelineClient
    from fskd_ros.ros.image_conversion import rgb_to_image

    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="fskd_latency_"))
    log = open(log_dir / "inspect.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fskd_ros.ros.inspect", f"camera_topic:={CAMERA}", f"model:={model_path}",
         f"backend:={backend}", f"gallery_path:={log_dir / 'gallery.npz'}"],
        stdout=log, stderr=subprocess.STDOUT, env=child_env())
    client = PipelineClient(name="fskd_latency_probe")
    arrived: Dict[int, float] = {}
    inference: Dict[int, float] = {}
    cond = threading.Condition()

    def on_result(msg) -> None:
        now = time.perf_counter()
        with cond:
            arrived[msg.header.stamp.nanosec] = now
            inference[msg.header.stamp.nanosec] = msg.inference_ms
            cond.notify_all()

    try:
        client.wait_for_services(60.0)
        rng = np.random.default_rng(0)
        enroll_images = [rgb_to_image(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))]
        client.call("enroll", label="probe", images=enroll_images)
        client.subscribe_classifications(on_result)
        camera = client.node.create_publisher(Image, CAMERA, qos.IMAGE_PUBLISHER)
        deadline = time.monotonic() + 30
        while camera.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        frame = rgb_to_image(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        latencies, node_ms = [], []
        for index in range(warmup + frames):
            frame.header.stamp.sec, frame.header.stamp.nanosec = 1, index
            with cond:
                sent = time.perf_counter()
                camera.publish(frame)
                if not cond.wait_for(lambda: index in arrived, timeout=5.0):
                    continue  # dropped frame: not counted, reported below
            if index >= warmup:
                latencies.append((arrived[index] - sent) * 1e3)
                node_ms.append(inference[index])
            time.sleep(0.01)
    finally:
        client.close()
        stop(proc)
        log.close()
    if not latencies:
        raise RuntimeError(f"no classification arrived; see {log_dir / 'inspect.log'}")
    return {
        "frames": frames, "received": len(latencies), "image": f"{width}x{height} rgb8",
        "end_to_end_ms_p50": float(np.percentile(latencies, 50)),
        "end_to_end_ms_p95": float(np.percentile(latencies, 95)),
        "end_to_end_ms_mean": float(np.mean(latencies)),
        "node_inference_ms_p50": float(np.percentile(node_ms, 50)),
        "node_inference_ms_p95": float(np.percentile(node_ms, 95)),
        "dds_overhead_ms_p50": float(np.percentile(np.subtract(latencies, node_ms), 50)),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_ros_latency(frames=int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
