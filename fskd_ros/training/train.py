"""``fskd train``: supervised cross-entropy pre-training on the base classes.

Used for the few-shot ResNet12 baseline and for the MobileViT student without
a teacher (the ablation that isolates distillation). ``--rotation W`` adds the
EASY-style self-supervised head: every image is rotated by a random multiple
of 90 degrees and a second linear head predicts the rotation (loss weight W).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fskd_ros.training.augment import crop_batch, to_float
from fskd_ros.training.common import DistInfo, add_common_arguments, run_distributed, set_seed
from fskd_ros.training.data import decode_images
from fskd_ros.training.distill import (index_loader, add_data_arguments, load_image_sets,
                                       steps_per_epoch)
from fskd_ros.training.engine import LoopConfig, add_loop_arguments, run_loop
from fskd_ros.training.models import EncoderSpec, create_encoder, feature_dim


class Classifier(nn.Module):
    """Encoder + linear class head (+ optional 4-way rotation head)."""

    def __init__(self, encoder: nn.Module, num_classes: int, rotation: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim(encoder), num_classes)
        self.rot_head = nn.Linear(feature_dim(encoder), 4) if rotation else None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        feats = self.encoder(x)
        return self.head(feats), (self.rot_head(feats) if self.rot_head is not None else None)


def make_loss(rotation_weight: float):
    def loss_fn(model: nn.Module, batch: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        x, labels, rots = batch
        logits, rot_logits = model(x)
        loss = F.cross_entropy(logits, labels)
        metrics = {"acc": (logits.argmax(1) == labels).float().mean().item()}
        if rot_logits is not None:
            rot_loss = F.cross_entropy(rot_logits, rots)
            metrics["rot_loss"] = rot_loss.item()
            loss = loss + rotation_weight * rot_loss
        return loss, metrics
    return loss_fn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="resnet12",
                        help="resnet12 / resnet12_narrow / resnet12_tiny / mobilevit_xxs / ...")
    parser.add_argument("--rotation", type=float, default=0.0,
                        help="weight of the rotation self-supervision loss (0 = off)")
    parser.add_argument("--source-size", type=int, default=0,
                        help="decoded image resolution crops are cut from (0 = 4/3 x input)")
    add_data_arguments(parser)
    add_loop_arguments(parser, epochs=10)
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_distributed(args, _run)


def _run(args: argparse.Namespace, dist_info: DistInfo) -> int:
    imageset = load_image_sets(args.data, args.split_file)
    if args.max_per_class:
        imageset = imageset.subset(args.max_per_class)
    source_size = args.source_size or (args.input_size * 4 + 2) // 3
    source = decode_images(imageset, (source_size, source_size), args.cache_dir,
                           progress=dist_info.is_main)
    labels = torch.from_numpy(imageset.labels)
    if dist_info.is_main:
        print(f"train {args.arch} (CE{' + rotation' if args.rotation else ''}) on {imageset.name}: "
              f"{len(imageset)} images, {len(imageset.classes)} classes, source {source_size}px")
    set_seed(args.seed)  # same init on every rank
    encoder = create_encoder(args.arch)
    spec = EncoderSpec(args.arch, [args.input_size] * 2)
    modules = Classifier(encoder, len(imageset.classes), args.rotation > 0)
    device = dist_info.device
    scale = (float(args.crop_scale[0]), float(args.crop_scale[1]))

    def collate(indices: List[int], epoch: int):
        rng = np.random.default_rng([args.seed, epoch, dist_info.rank, indices[0]])
        (u8,), _ = crop_batch(source[np.asarray(indices)], rng, [args.input_size], scale)
        rots = torch.zeros(len(indices), dtype=torch.long)
        if args.rotation > 0:
            rots = torch.from_numpy(rng.integers(0, 4, len(indices)))
            u8 = torch.stack([torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(u8, rots)])
        x = to_float(u8, spec.mean, spec.std)
        return x.to(device), labels[indices].to(device), rots.to(device)

    n = len(imageset)

    def loader_fn(epoch: int) -> Iterator:
        return iter(index_loader(n, args.batch_size, epoch, args.seed, dist_info,
                                  lambda idx: collate(idx, epoch)))

    summary = run_loop(modules, "encoder", spec, make_loss(args.rotation), loader_fn,
                       steps_per_epoch(n, args.batch_size, dist_info.world_size),
                       LoopConfig.from_args(args), dist_info,
                       "ce+rotation" if args.rotation else "ce", args,
                       extra={"data": imageset.name, "num_images": n,
                              "num_classes": len(imageset.classes)})
    if dist_info.is_main:
        print(f"done: {summary['steps']} steps in {summary['train_seconds']:.0f}s; "
              f"checkpoint {Path(args.output_dir) / 'final.pt'}")
    return 0
