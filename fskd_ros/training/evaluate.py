"""``fskd eval``: episodic N-way K-shot evaluation on folder-per-class sets.

Features are computed once per image (runtime preprocessing: whole image
resized to the encoder input, no centre crop), then many episodes are drawn
from them. Classifier: nearest class mean after subtracting the base-class
mean feature and L2-normalising, exactly as the fskd_ros runtime classifier
(cosine to the normalised class-mean prototype). Reports
mean +- 95% CI (1.96 std / sqrt(episodes)), parameters, MACs and latency, as
JSON, a Markdown table and a plot of accuracy vs shots.

Models: a checkpoint (``.pt``), an ONNX encoder file (run with the runtime's
onnxruntime backend, base mean from its metadata) or ``teacher:NAME[@SIZE]``.
Prefix ``LABEL=`` to name a model in the tables.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from fskd_ros.training.common import (DEFAULT_DATA_ROOT, atomic_write_text, save_json,
                                      set_threads)
from fskd_ros.training.data import (ImageSet, decode_images, default_set_specs, normalise_batch,
                                    parse_set_spec)
from fskd_ros.training.models import (EncoderSpec, count_macs, count_parameters, create_encoder,
                                      create_teacher)


# --------------------------------------------------------------------------- features
@torch.no_grad()
def extract_features(model: nn.Module | Callable[[np.ndarray], np.ndarray], spec: EncoderSpec,
                     imageset: ImageSet, cache_dir: Optional[str] = None, batch_size: int = 64,
                     progress: bool = True) -> np.ndarray:
    """(N, D) float32 features of every image, preprocessed as the runtime does."""
    images = decode_images(imageset, tuple(spec.input_size), cache_dir, progress=progress)
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"features {imageset.name}",
                      disable=not progress, leave=False, mininterval=10):
        batch = normalise_batch(torch.from_numpy(np.array(
            images[start:start + batch_size])), spec.mean, spec.std)
        if isinstance(model, nn.Module):
            out.append(model(batch).float().numpy())
        else:
            out.append(np.asarray(model(batch.numpy()), dtype=np.float32))
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- episodes
def ncm_episodes(features: np.ndarray, labels: np.ndarray, base_mean: np.ndarray, ways: int,
                 shots: int, queries: int, episodes: int, seed: int) -> np.ndarray:
    """Accuracy of each episode for the runtime's classifier: features centred on
    the base mean and L2-normalised (core.gallery.transform_features), prototype
    = mean of a class's shots, re-normalised; queries go to the highest cosine."""
    from fskd_ros.core.gallery import transform_features

    feats = transform_features(features, base_mean)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    by_class = [idx for idx in by_class if len(idx) >= shots + queries]
    if len(by_class) < ways:
        raise ValueError(f"only {len(by_class)} classes have {shots + queries} images; "
                         f"need {ways}")
    rng = np.random.default_rng(seed)
    accs = np.empty(episodes, dtype=np.float64)
    truth = np.repeat(np.arange(ways), queries)
    for e in range(episodes):
        chosen = rng.choice(len(by_class), ways, replace=False)
        support, query = [], []
        for c in chosen:
            picks = rng.choice(by_class[c], shots + queries, replace=False)
            support.append(feats[picks[:shots]].mean(axis=0))
            query.append(feats[picks[shots:]])
        protos = np.stack(support)  # (ways, D)
        protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        scores = np.concatenate(query) @ protos.T  # cosine: both sides unit length
        accs[e] = float((scores.argmax(1) == truth).mean())
    return accs


def summarise(accs: np.ndarray) -> Dict[str, float]:
    return {"mean": float(accs.mean() * 100),
            "ci95": float(1.96 * accs.std() / np.sqrt(len(accs)) * 100),
            "episodes": int(len(accs))}


# --------------------------------------------------------------------------- models
@dataclass
class LoadedModel:
    label: str
    spec: EncoderSpec
    forward: Any  # nn.Module or callable on numpy batches
    base_mean: Optional[np.ndarray] = None  # from ONNX metadata
    torch_model: Optional[nn.Module] = None
    params: Optional[int] = None
    macs: Optional[float] = None
    info: Dict[str, Any] = field(default_factory=dict)


def load_model(entry: str, teacher_weights: Optional[str] = None, threads: int = 1) -> LoadedModel:
    """``[LABEL=]checkpoint.pt | encoder.onnx | teacher:NAME[@SIZE]``."""
    from fskd_ros.training.export import load_encoder

    label, source = (entry.split("=", 1) if "=" in entry else (None, entry))
    if source.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper

        from fskd_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
        from fskd_ros.core.encoder_file import read_encoder_info

        info = read_encoder_info(source)
        backend = OnnxRuntimeBackend(Path(source), info, intra_op_threads=threads)
        spec = EncoderSpec(info.arch, list(info.input_size), list(info.mean), list(info.std))
        try:  # count on the same PyTorch architecture (ONNX folds BN into convs)
            if info.arch.startswith("teacher:"):
                reference, _ = create_teacher(info.arch.split(":", 1)[1], None, info.input_size[0])
            else:
                reference = create_encoder(info.arch)
            params = count_parameters(reference)
            macs = count_macs(reference, info.input_size)
        except Exception:  # unknown architecture: parameters from the graph, no MACs
            proto = onnx.load(source)
            params = int(sum(numpy_helper.to_array(t).size for t in proto.graph.initializer))
            macs = None
        return LoadedModel(label or Path(source).stem, spec, backend.encode,
                           info.base_mean_array() if info.base_mean else None, None, params, macs,
                           {"trained": info.trained, "encoder_id": info.encoder_id})
    size = None
    if source.startswith("teacher:") and "@" in source:
        source, size_text = source.rsplit("@", 1)
        size = int(size_text)
    model, spec, summary = load_encoder(source, input_size=size, teacher_weights=teacher_weights)
    default_label = (f"{source.split(':', 1)[1]}@{spec.input_size[0]}" if source.startswith("teacher:")
                     else Path(source).parent.name or source)
    return LoadedModel(label or default_label, spec, model, None, model,
                       count_parameters(model), count_macs(model, spec.input_size),
                       {"method": summary.get("method")})


def measure_latency(model: LoadedModel, runs: int = 30) -> float:
    """Median ms of one batch-1 forward pass on this CPU (threads as set)."""
    x = torch.zeros(1, 3, *model.spec.input_size)
    times = []
    with torch.no_grad():
        for i in range(runs + 5):
            t0 = time.perf_counter()
            if isinstance(model.forward, nn.Module):
                model.forward(x)
            else:
                model.forward(x.numpy())
            if i >= 5:  # warm-up excluded
                times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


# --------------------------------------------------------------------------- reports
def markdown_table(results: Dict[str, Any], ways: int) -> str:
    models = results["models"]
    sets = results["sets"]
    shots = results["shots"]
    head = ["model", "params (M)", f"MACs @input (M)", "latency (ms)"]
    for s in sets:
        head += [f"{s} {ways}w{k}s" for k in shots]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in models.items():
        row = [name, f"{m['params'] / 1e6:.2f}" if m.get("params") else "-",
               f"{m['macs'] / 1e6:.0f}" if m.get("macs") else "-",
               f"{m['latency_ms']:.1f}" if m.get("latency_ms") else "-"]
        for s in sets:
            for k in shots:
                r = m["results"].get(s, {}).get(str(k))
                row.append(f"{r['mean']:.2f} ± {r['ci95']:.2f}" if r else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(results: Dict[str, Any], path: Path, ways: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for name, m in results["models"].items():
            shots = [int(k) for k in m["results"].get(s, {})]
            if not shots:
                continue
            means = [m["results"][s][str(k)]["mean"] for k in shots]
            cis = [m["results"][s][str(k)]["ci95"] for k in shots]
            ax.errorbar(shots, means, yerr=cis, marker="o", capsize=3, label=name)
        ax.set_title(f"{s} ({ways}-way)")
        ax.set_xlabel("shots")
        ax.set_ylabel("accuracy (%)")
        ax.set_xticks(results["shots"])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+",
                        help="[LABEL=]checkpoint.pt | encoder.onnx | teacher:NAME[@SIZE]")
    parser.add_argument("--sets", nargs="+", default=None,
                        help="[NAME=]DIR[@SPLIT] evaluation sets (default: caltech101 novel, "
                             "neu-cls, omniglot-small from ../shared/data)")
    parser.add_argument("--base", nargs="*", default=None,
                        help="base-class sets for the mean feature (default caltech101@base)")
    parser.add_argument("--base-max-per-class", type=int, default=20,
                        help="images per base class used for the base mean (0 = all)")
    parser.add_argument("--split-file", default=None)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--max-per-class", type=int, default=0,
                        help="use at most N images per evaluation class (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True, help="results.json/.md/.png go here")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--teacher-weights", default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="add to an existing results.json in OUTPUT_DIR instead of replacing it")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    set_specs = args.sets or default_set_specs(DEFAULT_DATA_ROOT)
    base_specs = args.base if args.base is not None else [
        f"{DEFAULT_DATA_ROOT / 'caltech101'}@base"]
    sets = []
    for spec in set_specs:
        imageset = parse_set_spec(spec, args.split_file)
        sets.append(imageset.subset(args.max_per_class) if args.max_per_class else imageset)
    out_dir = Path(args.output_dir)
    results_path = out_dir / "results.json"
    results: Dict[str, Any] = {"models": {}}
    if args.merge and results_path.is_file():
        results = json.loads(results_path.read_text())
    results.update({"ways": args.ways, "shots": list(args.shots), "queries": args.queries,
                    "sets": sorted(set(results.get("sets", [])) | {s.name for s in sets},
                                   key=lambda n: ([s.name for s in sets] + [n]).index(n)),
                    "episodes": args.episodes, "preprocessing":
                        "whole image bilinear-resized to the encoder input (runtime path)"})
    for entry in args.models:
        model = load_model(entry, args.teacher_weights, max(1, args.threads))
        t0 = time.time()
        base_mean = model.base_mean
        if base_mean is None:
            base_feats = []
            for spec in base_specs:
                bset = parse_set_spec(spec, args.split_file)
                if args.base_max_per_class:
                    bset = bset.subset(args.base_max_per_class)
                base_feats.append(extract_features(model.forward, model.spec, bset, args.cache_dir,
                                                   args.batch_size))
            base_mean = np.concatenate(base_feats).mean(0) if base_feats else None
        entry_out = results["models"].get(model.label, {"results": {}})
        entry_out.update({"source": entry.split("=", 1)[-1], "params": model.params,
                          "macs": model.macs, "input_size": model.spec.input_size, **model.info})
        for imageset in sets:
            feats = extract_features(model.forward, model.spec, imageset, args.cache_dir,
                                     args.batch_size)
            bm = base_mean if base_mean is not None else np.zeros(feats.shape[1], np.float32)
            per_shot = {}
            for shots in args.shots:
                accs = ncm_episodes(feats, imageset.labels, bm, args.ways, shots, args.queries,
                                    args.episodes, args.seed)
                per_shot[str(shots)] = summarise(accs)
                print(f"{model.label:28s} {imageset.name:18s} {args.ways}-way {shots}-shot: "
                      f"{per_shot[str(shots)]['mean']:.2f} +- {per_shot[str(shots)]['ci95']:.2f}",
                      flush=True)
            entry_out["results"][imageset.name] = per_shot
        entry_out["feature_seconds"] = round(time.time() - t0, 1)
        if not args.no_latency:
            entry_out["latency_ms"] = measure_latency(model)
            entry_out["latency_threads"] = max(1, args.threads)
        results["models"][model.label] = entry_out
        # Save after every model so a long run keeps what it has.
        save_json(results_path, results)
        atomic_write_text(out_dir / "results.md", markdown_table(results, args.ways))
    plot(results, out_dir / "accuracy_vs_shots.png", args.ways)
    print(markdown_table(results, args.ways))
    return 0
