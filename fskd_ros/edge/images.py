"""Image loading for calibration and benchmarks, preprocessed exactly like the runtime.

RGB decode -> PIL bilinear resize of the whole image to the encoder's input
size -> /255 -> (x - mean) / std -> CHW float32. This mirrors
``fskd_ros.training.data.load_rgb_resized`` + normalisation and the node's
preprocessing, without torch (no shared runtime preprocessing module existed
when this was written; keep the two in step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from fskd_ros.core.encoder_file import EncoderInfo

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def list_images(folder: Path | str, limit: int = 0) -> List[Path]:
    """Images under ``folder`` (recursive), sorted. With ``limit``, taken round-robin
    over sub-folders (classes) so a small calibration set still covers every class."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    if not limit or limit >= len(files):
        return files
    groups: Dict[Path, List[Path]] = {}
    for path in files:
        groups.setdefault(path.parent, []).append(path)
    picked: List[Path] = []
    lists = [groups[k] for k in sorted(groups)]
    index = 0
    while len(picked) < limit:
        for group in lists:
            if index < len(group) and len(picked) < limit:
                picked.append(group[index])
        index += 1
    return picked


def load_rgb(path: Path | str, size: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8, whole image resized bilinearly to ``size`` = (H, W)."""
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def normalise(rgb: np.ndarray, info: EncoderInfo) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised with the encoder's mean/std."""
    mean = np.asarray(info.mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(info.std, dtype=np.float32).reshape(1, 1, 3)
    x = (rgb.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_batch(paths: Sequence[Path | str], info: EncoderInfo) -> np.ndarray:
    """(N, 3, H, W) float32 batch ready for ``EncoderBackend.encode``."""
    out = np.empty((len(paths), 3, int(info.input_size[0]), int(info.input_size[1])), np.float32)
    for i, path in enumerate(paths):
        out[i] = normalise(load_rgb(path, info.input_size), info)
    return out


def class_of(path: Path) -> str:
    return path.parent.name
