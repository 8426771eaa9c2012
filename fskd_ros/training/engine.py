"""The training loop shared by ``fskd distill`` and ``fskd train``.

AdamW + per-step cosine decay to 0, DDP when launched by torchrun, tqdm
progress on rank 0, a checkpoint after every epoch (``last.pt``, resumable,
written atomically) and a JSON-lines log.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fskd_ros.training.common import (CHECKPOINT_FORMAT, DistInfo, atomic_torch_save,
                                      load_checkpoint)
from fskd_ros.training.models import EncoderSpec

LossFn = Callable[[nn.Module, Any], Tuple[torch.Tensor, Dict[str, float]]]


@dataclass
class LoopConfig:
    epochs: int
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 0
    max_steps: int = 0  # >0 stops early (tests, smoke runs)
    out_dir: Path = Path("runs/default")
    resume: Optional[str] = None  # path, 'auto' (out_dir/last.pt if present) or None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "LoopConfig":
        return cls(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                   warmup_steps=args.warmup_steps, max_steps=args.max_steps,
                   out_dir=Path(args.output_dir), resume=args.resume)


def add_loop_arguments(parser: argparse.ArgumentParser, epochs: int = 10) -> None:
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N steps (smoke tests)")
    parser.add_argument("--output-dir", required=True, help="checkpoints and logs go here")
    parser.add_argument("--resume", default="auto",
                        help="checkpoint to resume, 'auto' (OUTPUT_DIR/last.pt if present) or 'none'")


def cosine_lambda(total_steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def _plain_args(args: argparse.Namespace) -> Dict[str, Any]:
    """Only primitive values, so the checkpoint stays weights_only-loadable."""
    return {k: v for k, v in vars(args).items()
            if isinstance(v, (str, int, float, bool, type(None))) or
            (isinstance(v, (list, tuple)) and all(isinstance(i, (str, int, float)) for i in v))}


def run_loop(modules: nn.Module, encoder_key: str, spec: EncoderSpec, loss_fn: LossFn,
             loader_fn: Callable[[int], Iterable], steps_per_epoch: int, cfg: LoopConfig,
             dist_info: DistInfo, method: str, args: argparse.Namespace,
             extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train ``modules`` (a ModuleDict whose ``encoder_key`` entry is the encoder).

    ``loader_fn(epoch)`` yields batches; ``loss_fn(model, batch)`` returns the
    loss and metrics. Returns a summary dict (final loss, seconds, steps).
    """
    device = dist_info.device
    modules.to(device)
    params = [p for p in modules.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_lambda(total_steps,
                                                                           cfg.warmup_steps))
    start_epoch, step, history, elapsed = 0, 0, [], 0.0
    resume = cfg.resume
    if resume == "auto":
        candidate = cfg.out_dir / "last.pt"
        resume = str(candidate) if candidate.is_file() else None
    if resume and resume != "none":
        ckpt = load_checkpoint(resume)
        modules.load_state_dict(ckpt["modules"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        history = list(ckpt.get("history", []))
        elapsed = float(ckpt.get("train_seconds", 0.0))
        if dist_info.is_main:
            print(f"resumed {resume} at epoch {start_epoch}, step {step}")
    model: nn.Module = modules
    if dist_info.enabled:
        # find_unused_parameters: the rotation head is skipped in some configs.
        model = DistributedDataParallel(modules, device_ids=[device.index] if device.type == "cuda"
                                        else None, find_unused_parameters=True)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = cfg.out_dir / "log.jsonl"
    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        modules.train()
        t0 = time.time()
        sums: Dict[str, float] = {}
        count = 0
        bar = tqdm(loader_fn(epoch), total=steps_per_epoch, desc=f"{method} ep {epoch + 1}/{cfg.epochs}",
                   disable=not dist_info.is_main, leave=False, mininterval=10)
        for batch in bar:
            loss, metrics = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            count += 1
            metrics = {"loss": float(loss.detach()), **metrics}
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
            if cfg.max_steps and step >= cfg.max_steps:
                stop = True
                break
        elapsed += time.time() - t0
        record = {"epoch": epoch + 1, "step": step, "seconds": round(elapsed, 1),
                  "lr": scheduler.get_last_lr()[0],
                  **{k: v / max(1, count) for k, v in sums.items()}}
        history.append(record)
        if dist_info.is_main:
            print(json.dumps(record), flush=True)
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            ckpt = {
                "format": CHECKPOINT_FORMAT, "method": method, "arch": spec.arch,
                "spec": spec.to_dict(), "model": getattr(modules, encoder_key).state_dict(),
                "modules": modules.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step,
                "history": history, "train_seconds": elapsed, "world_size": dist_info.world_size,
                "args": _plain_args(args), **(extra or {}),
            }
            atomic_torch_save(ckpt, cfg.out_dir / "last.pt")
        if stop:
            break
    if dist_info.is_main and (cfg.out_dir / "last.pt").is_file():
        # final.pt: the encoder-only checkpoint that export/eval use (small).
        last = load_checkpoint(cfg.out_dir / "last.pt")
        final = {k: v for k, v in last.items() if k not in ("optimizer", "scheduler", "modules")}
        atomic_torch_save(final, cfg.out_dir / "final.pt")
    return {"steps": step, "train_seconds": elapsed, "history": history}
