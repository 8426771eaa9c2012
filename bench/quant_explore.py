"""Explore int8 variants of an encoder on this CPU (short runs; prints a table).

    .venv/bin/python bench/quant_explore.py MODEL.onnx CALIB_DIR [--batches 1,8]

Variants: layout (QOperator / QDQ) x which ops are quantised (all Conv+MatMul+Gemm,
without depthwise convs, ...). Latency with the runtime's ORT settings, rounds
interleaved so background load hits every variant alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from fskd_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from fskd_ros.core.encoder_file import read_encoder_info
from fskd_ros.edge.images import list_images
from fskd_ros.edge.quantize import _preprocess, quantize_file


def depthwise_convs(path: Path) -> list:
    model = onnx.load(str(path))
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1:
                names.append(node.name)
    return names


def activation_matmuls(path: Path) -> list:
    """MatMuls whose inputs are both activations (attention q@k, attn@v)."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in inits for i in n.input)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("calib_dir")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--calib-images", type=int, default=64)
    args = parser.parse_args()
    info = read_encoder_info(args.model)
    files = list_images(args.calib_dir, limit=args.calib_images)
    tmp = Path(tempfile.mkdtemp(prefix="qexplore-"))
    pre = _preprocess(Path(args.model), tmp / "pre.onnx")
    dw = depthwise_convs(pre)
    am = activation_matmuls(pre)
    variants = {"float": Path(args.model)}
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: F401
    from fskd_ros.edge.quantize import _Reader
    from onnxruntime.quantization import CalibrationMethod

    specs = {
        "qop conv+matmul": ("qoperator", ("Conv", "MatMul", "Gemm"), []),
        "qdq conv+matmul": ("qdq", ("Conv", "MatMul", "Gemm"), []),
        "qop matmul only": ("qoperator", ("MatMul", "Gemm"), []),
        "qop weights-only mm": ("qoperator", ("Conv", "MatMul", "Gemm"), am),
        "qop conv only": ("qoperator", ("Conv",), []),
        "qdq all ops": ("qdq", (), []),
    }
    for name, (fmt, ops, exclude) in specs.items():
        out = tmp / f"{name.replace(' ', '_')}.onnx"
        quantize_static(str(pre), str(out), _Reader(files, info),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        op_types_to_quantize=list(ops) or None, nodes_to_exclude=exclude,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        variants[name] = out
    backends = {}
    for k, v in variants.items():
        try:
            backends[k] = OnnxRuntimeBackend(v, info, intra_op_threads=args.threads)
        except Exception as exc:  # some layouts are rejected by ORT for some graphs
            print(f"  {k}: cannot load ({str(exc)[:120]})")
    h, w = info.input_size
    for batch in [int(b) for b in args.batches.split(",")]:
        x = np.random.default_rng(0).normal(size=(batch, 3, h, w)).astype(np.float32)
        times = {k: [] for k in backends}
        for b in backends.values():
            for _ in range(3):
                b.encode(x)
        rounds = 6
        for _ in range(rounds):
            for k, b in backends.items():
                for _ in range(max(1, args.iters // rounds)):
                    t = time.perf_counter()
                    b.encode(x)
                    times[k].append((time.perf_counter() - t) * 1e3)
        ref = float(np.median(times["float"]))
        print(f"batch {batch} ({len(dw)} depthwise convs in graph)")
        for k, ts in times.items():
            p50 = float(np.median(ts))
            print(f"  {k:20s} p50 {p50:8.2f} ms  speed-up vs float {ref / p50:5.2f}x")


if __name__ == "__main__":
    main()
