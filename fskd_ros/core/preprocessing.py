"""Image decoding and preprocessing shared by the nodes, tools and training.

Raw camera buffers (the fields of a sensor_msgs/Image) are validated and turned
into RGB uint8 arrays here, without ROS, so every check is testable and the
same code serves cv_bridge-less machines. The encoder input is the whole image
resized (bilinear) to the encoder's input size, scaled to [0, 1] and normalised
with the encoder's mean/std; training-side evaluation mirrors this exactly.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

from fskd_ros.core.encoder_file import EncoderInfo

# encoding -> (channels, numpy dtype)
SUPPORTED_ENCODINGS: Dict[str, Tuple[int, str]] = {
    "rgb8": (3, "u1"),
    "bgr8": (3, "u1"),
    "rgba8": (4, "u1"),
    "bgra8": (4, "u1"),
    "mono8": (1, "u1"),
    "mono16": (1, "u2"),
}

# Refuse absurd frames before allocating anything (16k x 16k is far above any camera).
MAX_SIDE = 16384


class ImageFormatError(ValueError):
    """The raw image cannot be interpreted; the message says why."""


def validate_raw(encoding: str, height: int, width: int, step: int, data_size: int) -> None:
    """Raise ImageFormatError unless the buffer fields describe a usable image."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageFormatError(
            f"unsupported encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"empty image ({width}x{height})")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageFormatError(f"image {width}x{height} exceeds {MAX_SIDE} px per side")
    channels, kind = SUPPORTED_ENCODINGS[encoding]
    row_bytes = width * channels * (2 if kind == "u2" else 1)
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} for {encoding}")
    if data_size != step * height:
        raise ImageFormatError(
            f"data has {data_size} bytes, expected step*height = {step}*{height} = {step * height}")


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes,
               is_bigendian: bool = False) -> np.ndarray:
    """Validate a raw image buffer and return an (H, W, 3) RGB uint8 array."""
    validate_raw(encoding, height, width, step, len(data))
    channels, kind = SUPPORTED_ENCODINGS[encoding]
    row_bytes = width * channels * (2 if kind == "u2" else 1)
    dtype = np.dtype(kind).newbyteorder(">" if is_bigendian else "<")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = rows.copy().view(dtype).reshape(height, width, channels)
    if kind == "u2":
        # 16-bit mono: keep the top 8 bits (full-range scaling, like cv_bridge's mono8 conversion).
        pixels = (pixels >> 8).astype(np.uint8)
    if encoding in ("bgr8", "bgra8"):
        pixels = pixels[:, :, 2::-1]
    elif encoding == "rgba8":
        pixels = pixels[:, :, :3]
    elif channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def resize_rgb(rgb: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize the whole image (no crop) to (height, width) with bilinear filtering."""
    height, width = int(size[0]), int(size[1])
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def normalize(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32, scaled to [0, 1] then standardised."""
    scale = np.float32(1.0 / 255.0)
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_arr = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    chw = rgb.transpose(2, 0, 1).astype(np.float32) * scale
    return (chw - mean_arr) / std_arr


def preprocess(rgb: np.ndarray, info: EncoderInfo) -> np.ndarray:
    """RGB uint8 image -> (3, H, W) float32 encoder input."""
    return normalize(resize_rgb(rgb, info.input_size), info.mean, info.std)


def preprocess_batch(images: Sequence[np.ndarray], info: EncoderInfo) -> np.ndarray:
    """List of RGB uint8 images -> (N, 3, H, W) float32 batch."""
    return np.stack([preprocess(image, info) for image in images]).astype(np.float32)


def load_image_file(path: str) -> np.ndarray:
    """Read an image file from disk as RGB uint8 (PIL decodes; errors say which file)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ImageFormatError(f"cannot read image {path}: {exc}") from exc
