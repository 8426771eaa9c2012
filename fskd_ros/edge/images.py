"""Image loading for calibration and benchmarks, preprocessed exactly like the runtime.

Delegates to ``fskd_ros.core.preprocessing`` (the nodes' own code): RGB decode ->
bilinear resize of the whole image to the encoder's input size -> /255 ->
(x - mean) / std -> CHW float32. No torch.
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


def load_batch(paths: Sequence[Path | str], info: EncoderInfo) -> np.ndarray:
    """(N, 3, H, W) float32 batch ready for ``EncoderBackend.encode``."""
    from fskd_ros.core.preprocessing import load_image_file, preprocess

    out = np.empty((len(paths), 3, int(info.input_size[0]), int(info.input_size[1])), np.float32)
    for i, path in enumerate(paths):
        out[i] = preprocess(load_image_file(str(path)), info)
    return out


def class_of(path: Path) -> str:
    return path.parent.name
