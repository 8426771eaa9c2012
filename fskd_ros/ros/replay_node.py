"""Replay node: publishes a folder of images (or a video) as sensor_msgs/Image.

For demos and tests. Each frame also goes out on ``~/source`` as a JSON string
{"sec", "nanosec", "path", "index"} so a client can tell which file a result
belongs to (folder-per-class data gives ground truth from the path).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from fskd_ros.core.preprocessing import ImageFormatError, load_image_file
from fskd_ros.ros import qos
from fskd_ros.ros.encoder_node import run_nodes
from fskd_ros.ros.image_conversion import rgb_to_image
from fskd_ros.ros.params import ParamSpec, declare_parameters

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"}

PARAMETERS = [
    ParamSpec("path", "", "Folder of images (searched recursively), a text file listing images, or a video"),
    ParamSpec("rate_hz", 10.0, "Frames per second", (0.01, 1000.0)),
    ParamSpec("loop", False, "Start again at the end"),
    ParamSpec("shuffle", False, "Random order (seeded)"),
    ParamSpec("seed", 0, "Seed for shuffle", (0, 2**31 - 1)),
    ParamSpec("encoding", "rgb8", "Published encoding: rgb8, bgr8 or mono8"),
    ParamSpec("frame_id", "camera", "header.frame_id of published frames"),
    ParamSpec("width", 0, "Resize to this width (0 = keep)", (0, 16384)),
    ParamSpec("height", 0, "Resize to this height (0 = keep)", (0, 16384)),
    ParamSpec("start_delay_s", 0.0, "Wait before the first frame (let subscribers connect)", (0.0, 3600.0)),
    ParamSpec("wait_for_subscribers", 0, "Hold the first frame until this many subscribers listen", (0, 1000)),
    ParamSpec("max_frames", 0, "Stop after this many frames (0 = all)", (0, 10**9)),
]


def list_images(path: Path) -> List[Path]:
    """Images under a folder (sorted) or listed one per line in a text file."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix == ".txt":
        return [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    return []


class ReplayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("replay", **kwargs)
        self.params = declare_parameters(self, PARAMETERS)
        source = Path(self.params["path"]).expanduser()
        if not self.params["path"] or not source.exists():
            raise RuntimeError(f"replay: parameter path '{self.params['path']}' does not exist")
        self.files = list_images(source)
        self._video = None
        if not self.files:
            self._video = self._open_video(source)
        elif self.params["shuffle"]:
            random.Random(self.params["seed"]).shuffle(self.files)
        self._frames = self._iterate()
        self.published = 0
        self.finished = False
        self._image_pub = self.create_publisher(Image, "image", qos.IMAGE_PUBLISHER)
        self._source_pub = self.create_publisher(String, "~/source", qos.LATCHED)
        count = f"{len(self.files)} images" if self.files else "video frames"
        self.get_logger().info(f"replaying {count} from {source} at {self.params['rate_hz']} Hz")
        self._start_timer = self.create_timer(max(self.params["start_delay_s"], 1e-3), self._start)

    def _open_video(self, source: Path):
        try:
            import cv2  # optional: only videos need OpenCV
        except ImportError as exc:
            raise RuntimeError(f"replay: {source} holds no images, and reading videos needs "
                               "OpenCV (pip install opencv-python-headless)") from exc
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise RuntimeError(f"replay: cannot open {source} as a video or image folder")
        return capture

    def _iterate(self) -> Iterator[Tuple[str, np.ndarray]]:
        while True:
            if self._video is not None:
                import cv2

                ok, bgr = self._video.read()
                if not ok:
                    if not self.params["loop"]:
                        return
                    self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                yield "video", bgr[:, :, ::-1]
            else:
                for path in self.files:
                    try:
                        yield str(path), load_image_file(str(path))
                    except ImageFormatError as exc:
                        self.get_logger().warning(f"skipping {exc}")
                if not self.params["loop"]:
                    return

    def _start(self) -> None:
        if self._image_pub.get_subscription_count() < self.params["wait_for_subscribers"]:
            return  # checked again on the next start timer tick
        self.destroy_timer(self._start_timer)
        self.create_timer(1.0 / self.params["rate_hz"], self._tick)

    def _tick(self) -> None:
        if self.finished:
            return
        limit = self.params["max_frames"]
        item = next(self._frames, None) if not limit or self.published < limit else None
        if item is None:
            self.finished = True
            self.get_logger().info(f"replay finished after {self.published} frames")
            return
        path, rgb = item
        width, height = self.params["width"], self.params["height"]
        if width and height:
            from PIL import Image as PILImage

            rgb = np.asarray(PILImage.fromarray(rgb).resize((width, height), PILImage.BILINEAR))
        msg = rgb_to_image(rgb, encoding=self.params["encoding"])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params["frame_id"]
        self._source_pub.publish(String(data=json.dumps({
            "sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec,
            "path": path, "index": self.published})))
        self._image_pub.publish(msg)
        self.published += 1


def main(args: Optional[List[str]] = None) -> int:
    return run_nodes([ReplayNode], args)


if __name__ == "__main__":
    sys.exit(main())
