"""Random-resized-crop + horizontal flip on cached uint8 images.

Crop parameters are drawn once and can be applied at two resolutions, so the
teacher sees a larger view of exactly the crop the student sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF


@dataclass
class CropParams:
    top: int
    left: int
    height: int
    width: int
    flip: bool


def sample_crop(rng: np.random.Generator, height: int, width: int,
                scale: Sequence[float] = (0.25, 1.0),
                ratio: Sequence[float] = (3 / 4, 4 / 3)) -> CropParams:
    """torchvision's RandomResizedCrop sampling, driven by a numpy Generator
    (so cached views are reproducible per image index)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return CropParams(top, left, h, w, bool(rng.random() < 0.5))
    # Fallback: whole image (as torchvision does for extreme ratios).
    return CropParams(0, 0, height, width, bool(rng.random() < 0.5))


def apply_crop(image_hwc: np.ndarray, params: CropParams, size: int) -> torch.Tensor:
    """uint8 HWC -> uint8 CHW crop resized to size x size (bilinear, antialiased)."""
    # np.array copies: cached images are read-only memmaps, torch wants writable memory.
    chw = torch.from_numpy(np.array(image_hwc)).permute(2, 0, 1)
    out = TF.resized_crop(chw, params.top, params.left, params.height, params.width,
                          [size, size], antialias=True)
    return TF.horizontal_flip(out) if params.flip else out


def crop_batch(images: np.ndarray, rng: np.random.Generator, sizes: Sequence[int],
               scale: Sequence[float] = (0.25, 1.0)) -> Tuple[List[torch.Tensor], List[CropParams]]:
    """Same random crop per image at every resolution in ``sizes``.

    Returns one uint8 NCHW tensor per size and the crop parameters.
    """
    params = [sample_crop(rng, img.shape[0], img.shape[1], scale) for img in images]
    outs = [torch.stack([apply_crop(img, p, s) for img, p in zip(images, params)]) for s in sizes]
    return outs, params


def to_float(batch_uint8_nchw: torch.Tensor, mean: Sequence[float],
             std: Sequence[float]) -> torch.Tensor:
    """uint8 NCHW -> normalised float NCHW (the runtime's /255, (x-mean)/std)."""
    x = batch_uint8_nchw.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
