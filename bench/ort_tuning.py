"""Measure ONNX Runtime session settings on this CPU (short run; prints a table).

    .venv/bin/python bench/ort_tuning.py MODEL.onnx [--batch 1] [--iters 100]

Used to choose the defaults of fskd_ros/core/backends/onnxruntime_backend.py.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort


def session(path, level="all", threads=0, spinning=True, arena=True, parallel=False,
            pattern=True):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if threads:
        opts.intra_op_num_threads = threads
    opts.enable_cpu_mem_arena = arena
    opts.enable_mem_pattern = pattern
    opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if parallel
                           else ort.ExecutionMode.ORT_SEQUENTIAL)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def measure(sess, batch, iters, warmup=10):
    shape = sess.get_inputs()[0].shape
    x = np.random.default_rng(0).normal(size=(batch, 3, shape[2], shape[3])).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"images": x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {"images": x})
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=100)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    variants = {
        "ort defaults (ENABLE_ALL, threads=auto)": {},
        "opt level basic": {"level": "basic"},
        "opt level none": {"level": "none"},
        "threads=1": {"threads": 1},
        f"threads={cores}": {"threads": cores},
        "no spinning": {"spinning": False},
        "no arena": {"arena": False},
        "parallel executor": {"parallel": True},
    }
    print(f"{args.model} batch {args.batch}, {args.iters} iters, {cores} cores, ORT {ort.__version__}")
    for name, kwargs in variants.items():
        p50, p95 = measure(session(args.model, **kwargs), args.batch, args.iters)
        print(f"  {name:45s} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")


if __name__ == "__main__":
    main()
