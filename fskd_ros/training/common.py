"""Small shared helpers: checkpoints, seeds, threads, torchrun/DDP setup.

Checkpoints are plain dicts of tensors and primitive values written with
``torch.save`` and always read back with ``weights_only=True``: a user file
is never unpickled into arbitrary objects.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

CHECKPOINT_FORMAT = 1
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = PROJECT_ROOT.parent / "shared" / "data"


from fskd_ros.core.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402,F401 (re-export)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not an fskd checkpoint."""




def atomic_torch_save(obj: Any, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Path | str) -> Dict[str, Any]:
    """Load an fskd checkpoint safely (weights_only) with a clear error message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle of foreign objects, ...
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is corrupt, truncated or not a "
            f"plain tensor checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise CheckpointError(
            f"{path} is not an fskd checkpoint (expected a dict with 'arch' and 'model')")
    return ckpt


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """0 keeps torch's default; CPU runs here use 1 so other users keep a core."""
    if threads > 0:
        torch.set_num_threads(threads)


def save_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass
class DistInfo:
    """Where this process sits in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise DDP from torchrun's environment: nccl on GPU, gloo on CPU."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed(info: Optional[DistInfo]) -> None:
    if info is not None and info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def run_distributed(args, body) -> int:
    """Set threads, join the torchrun group (if any), run ``body(args, info)``, always leave it."""
    set_threads(args.threads)
    info = init_distributed(args.device)
    try:
        return body(args, info)
    finally:
        cleanup_distributed(info)


def add_common_arguments(parser) -> None:
    """Arguments every training command shares."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch default)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
