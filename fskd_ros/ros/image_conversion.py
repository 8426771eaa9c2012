"""sensor_msgs/Image <-> numpy, through cv_bridge where installed.

Both paths validate the message first with fskd_ros.core.preprocessing, so a
malformed image gives the same clear error with or without cv_bridge.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from fskd_ros.core.preprocessing import ImageFormatError, raw_to_rgb, validate_raw

try:  # cv_bridge ships with desktop/JetPack ROS installs, not with the PyPI wheels.
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except ImportError:  # pragma: no cover - depends on the install
    _BRIDGE = None


def has_cv_bridge() -> bool:
    return _BRIDGE is not None


def image_to_rgb(msg: Image) -> np.ndarray:
    """Validated (H, W, 3) RGB uint8 array from an Image message."""
    data = msg.data if isinstance(msg.data, (bytes, bytearray)) else bytes(msg.data)
    validate_raw(msg.encoding, msg.height, msg.width, msg.step, len(data))
    # mono16 -> rgb8 in cv_bridge saturates instead of scaling; keep our path for it.
    if _BRIDGE is None or msg.encoding == "mono16":
        return raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, data, bool(msg.is_bigendian))
    try:
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except Exception as exc:  # cv_bridge raises CvBridgeError
        raise ImageFormatError(f"cv_bridge could not convert the image: {exc}") from exc


def rgb_to_image(rgb: np.ndarray, header=None, encoding: str = "rgb8") -> Image:
    """Image message from an (H, W, 3) RGB or (H, W) mono uint8 array."""
    msg = Image()
    if header is not None:
        msg.header = header
    if encoding == "mono8":
        pixels = rgb if rgb.ndim == 2 else rgb[:, :, 0]
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgb8":
        pixels = rgb
    else:
        raise ImageFormatError(f"cannot publish encoding '{encoding}'; use rgb8, bgr8 or mono8")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0])
    msg.data = pixels.tobytes()
    return msg
