"""DDP: ``torchrun`` with two CPU processes (gloo) runs a distillation step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from test_training import make_tiny_set  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_torchrun_two_gloo_processes(tmp_path: Path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    data = make_tiny_set(tmp_path / "d", classes=2, per_class=4)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fskd_ros.cli", "distill", "--data", f"{data}@base", "--teacher-size", "64",
           "--input-size", "64", "--views", "1", "--epochs", "1", "--batch-size", "2",
           "--device", "cpu", "--threads", "1", "--output-dir", str(out),
           "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from fskd_ros.training.common import load_checkpoint

    ckpt = load_checkpoint(out / "final.pt")
    # 8 images / 2 ranks / batch 2 = 2 steps per rank.
    assert ckpt["world_size"] == 2 and ckpt["step"] == 2
