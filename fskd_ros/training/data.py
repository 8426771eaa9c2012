"""Folder-per-class image sets, class splits, runtime-identical preprocessing
and decoded-image caches.

A data set is given on the command line as ``[NAME=]DIR[@SPLIT]``:
``DIR`` holds one folder per class; ``@SPLIT`` keeps only the classes listed
under that key of the split file (by default ``DIR/../splits/<dirname>.json``,
e.g. ``../shared/data/caltech101@base``).

Preprocessing mirrors fskd_ros/core exactly (RGB uint8 -> PIL bilinear resize
of the whole image to the input size -> /255 -> (x-mean)/std -> CHW) so offline
numbers match what the robot computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(ValueError):
    """A data set path, split or image cannot be used."""


@dataclass
class ImageSet:
    """A list of image files with integer class labels."""

    name: str
    root: Path
    paths: List[Path]
    labels: np.ndarray  # int64, index into classes
    classes: List[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, count_per_class: int) -> "ImageSet":
        """First ``count_per_class`` images of every class (for tiny test runs)."""
        keep = []
        for label in range(len(self.classes)):
            keep.extend(np.flatnonzero(self.labels == label)[:count_per_class].tolist())
        return ImageSet(self.name, self.root, [self.paths[i] for i in keep],
                        self.labels[keep], list(self.classes))


def load_split(split_file: Path | str, split: str) -> List[str]:
    """Class names of one split (``base``/``val``/``novel``) of a split file."""
    split_file = Path(split_file)
    if not split_file.is_file():
        raise DataError(f"split file not found: {split_file}")
    with open(split_file, "r", encoding="utf-8") as handle:
        splits = json.load(handle)
    if split not in splits:
        raise DataError(f"{split_file} has no split '{split}' (has: {', '.join(splits)})")
    return list(splits[split])


def list_image_folder(root: Path | str, classes: Optional[Sequence[str]] = None,
                      name: str = "") -> ImageSet:
    """All images under ``root/<class>/``; ``classes`` restricts and orders them."""
    root = Path(root).resolve()  # absolute: cache keys must not depend on the cwd
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths: List[Path] = []
    labels: List[int] = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            raise DataError(f"class folder not found: {folder}")
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataError(f"no images found under {root}")
    return ImageSet(name or root.name, root, paths, np.asarray(labels, dtype=np.int64),
                    list(classes))


def parse_set_spec(spec: str, split_file: Optional[str] = None) -> ImageSet:
    """``[NAME=]DIR[@SPLIT]`` -> ImageSet (see module docstring)."""
    name = ""
    if "=" in spec:
        name, spec = spec.split("=", 1)
    split = None
    if "@" in spec:
        spec, split = spec.rsplit("@", 1)
    root = Path(spec).expanduser()
    classes = None
    if split:
        sfile = Path(split_file) if split_file else root.parent / "splits" / f"{root.name}.json"
        classes = load_split(sfile, split)
    default_name = root.name + (f"-{split}" if split else "")
    return list_image_folder(root, classes, name=name or default_name)


def load_rgb_resized(path: Path | str, size: Tuple[int, int]) -> np.ndarray:
    """Decode to RGB and resize the whole image to (H, W) exactly as the runtime does."""
    height, width = size
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (width, height):
                img = img.resize((width, height), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc


def cache_key(imageset: ImageSet, size: Tuple[int, int]) -> str:
    digest = hashlib.sha256()
    digest.update(f"v1 {size[0]}x{size[1]}".encode())
    for path in imageset.paths:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def decode_images(imageset: ImageSet, size: Tuple[int, int],
                  cache_dir: Optional[Path | str] = None, progress: bool = True) -> np.ndarray:
    """All images of a set as one uint8 (N, H, W, 3) array, cached as .npy.

    Decoding JPEGs dominates short CPU runs; the cache is keyed on the file list,
    sizes, mtimes and resolution so a changed data set is never served stale.
    """
    size = (int(size[0]), int(size[1]))
    cache_path = None
    if cache_dir is not None:
        key = cache_key(imageset, size)
        cache_path = Path(cache_dir) / f"{imageset.name}-{size[0]}x{size[1]}-{key}.npy"
        if cache_path.is_file():
            return np.load(cache_path, mmap_mode="r", allow_pickle=False)
    out = np.empty((len(imageset), size[0], size[1], 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(imageset.paths, desc=f"decode {imageset.name} @{size[0]}",
                                  disable=not progress, leave=False)):
        out[i] = load_rgb_resized(path, size)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cache-", suffix=".npy", dir=str(cache_path.parent))
        os.close(fd)
        try:
            np.save(tmp, out, allow_pickle=False)
            os.replace(tmp, cache_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def normalise_batch(images: torch.Tensor, mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC (or float NCHW in [0,1]) -> float NCHW normalised."""
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def default_set_specs(data_root: Path) -> List[str]:
    """The evaluation sets of the shared data (novel classes / unseen domains)."""
    return [f"caltech101-novel={data_root / 'caltech101'}@novel",
            f"neu-cls={data_root / 'neu-cls'}",
            f"omniglot-small={data_root / 'omniglot-small'}"]
