"""Compare a float and an int8 encoder on real images: embedding cosine and
N-way K-shot accuracy over the *same* episodes (paired difference).

    python -m fskd_ros.edge.fewshot_check FLOAT.onnx INT8.onnx --data DIR \
        [--per-class 100] [--episodes 600] [--ways 5 --shots 5 --queries 15]

Embeddings come from the ONNX Runtime backend (what the CPU path ships);
classification is nearest class mean after subtracting the encoder's base-class
mean and L2-normalising (SimpleShot-style CL2N; with an empty base mean it is
plain cosine nearest-centroid). This is a self-contained check for the int8
path; ``fskd eval`` is the project's full evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from fskd_ros.core.backends import create_backend
from fskd_ros.core.encoder_file import read_encoder_info
from fskd_ros.edge.images import class_of, list_images, load_batch


def embed(model: Path, files: Sequence[Path], batch: int = 32, threads: int = 0) -> np.ndarray:
    info = read_encoder_info(model)
    backend = create_backend("onnxruntime", model, intra_op_threads=threads)
    feats = [backend.encode(load_batch(files[i:i + batch], info))
             for i in range(0, len(files), batch)]
    return np.concatenate(feats).astype(np.float32)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na, 1e-12)


def cl2n(feats: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    x = feats - base_mean[None, :]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def episodes(labels: np.ndarray, count: int, ways: int, shots: int, queries: int,
             seed: int = 0) -> List[Dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if len(classes) < ways:
        raise ValueError(f"{len(classes)} classes < {ways} ways")
    out = []
    for _ in range(count):
        chosen = rng.choice(classes, ways, replace=False)
        support, query, qlab = [], [], []
        for k, cls in enumerate(chosen):
            idx = rng.permutation(np.flatnonzero(labels == cls))[:shots + queries]
            support.append(idx[:shots])
            query.extend(idx[shots:])
            qlab.extend([k] * (len(idx) - shots))
        out.append({"support": np.stack(support), "query": np.asarray(query),
                    "labels": np.asarray(qlab)})
    return out


def episode_accuracy(feats: np.ndarray, eps: List[Dict[str, np.ndarray]]) -> np.ndarray:
    accs = []
    for ep in eps:
        centroids = feats[ep["support"]].mean(axis=1)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        pred = np.argmax(feats[ep["query"]] @ centroids.T, axis=1)
        accs.append(float((pred == ep["labels"]).mean()))
    return np.asarray(accs)


def compare(float_model: Path, int8_model: Path, data: Path, per_class: int = 100,
            n_episodes: int = 600, ways: int = 5, shots: int = 5, queries: int = 15,
            threads: int = 0, seed: int = 0) -> Dict[str, object]:
    all_files = list_images(data)
    by_class: Dict[str, List[Path]] = {}
    for f in all_files:
        by_class.setdefault(class_of(f), []).append(f)
    rng = np.random.default_rng(seed)
    files: List[Path] = []
    for cls in sorted(by_class):
        group = by_class[cls]
        pick = rng.permutation(len(group))[:per_class] if per_class else range(len(group))
        files.extend(group[i] for i in sorted(pick))
    labels = np.asarray([sorted(by_class).index(class_of(f)) for f in files])
    info = read_encoder_info(float_model)
    f32 = embed(float_model, files, threads=threads)
    i8 = embed(int8_model, files, threads=threads)
    cos = cosine_rows(f32, i8)
    base = info.base_mean_array()
    eps = episodes(labels, n_episodes, ways, shots, queries, seed)
    acc_f = episode_accuracy(cl2n(f32, base), eps)
    acc_q = episode_accuracy(cl2n(i8, base), eps)
    diff = acc_q - acc_f
    ci = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    return {
        "data": str(data), "images": len(files), "classes": len(by_class),
        "encoder_trained": info.trained,
        "cosine": {"min": round(float(cos.min()), 5), "p01": round(float(np.percentile(cos, 1)), 5),
                   "mean": round(float(cos.mean()), 5)},
        "task": f"{ways}-way {shots}-shot, {queries} queries/class, {n_episodes} episodes",
        "float_acc": round(100 * float(acc_f.mean()), 2),
        "int8_acc": round(100 * float(acc_q.mean()), 2),
        "delta_points": round(100 * float(diff.mean()), 2),
        "delta_ci95_points": round(100 * float(ci), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_model")
    parser.add_argument("int8_model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    report = compare(Path(args.float_model), Path(args.int8_model), Path(args.data),
                     args.per_class, args.episodes, args.ways, args.shots, args.queries,
                     args.threads)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
