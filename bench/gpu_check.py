"""One-shot GPU check for a machine with CUDA + cuda-python but no TensorRT.

    python bench/gpu_check.py [--model fskd_ros/models/default_encoder.onnx] [--out DIR]

1. cuda-python buffer code (fskd_ros/core/backends/cuda_buffers.py) on a real
   GPU: device query, pinned + device allocation, async H2D/D2H round trip on a
   stream, exact equality, frees.
2. If tensorrt imports: build an fp16 engine for the encoder through the
   backend and compare with onnxruntime (else reported as skipped).
3. Reference latency of the same encoder architecture on CUDA through torch
   (random weights: latency does not depend on them), fp32 and fp16, batch 1
   and 8, CUDA-event timed. Writes gpu_check.json into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def check_buffers() -> dict:
    from fskd_ros.core.backends.cuda_buffers import CudaRuntime, IOBinding

    rt = CudaRuntime()
    name, cc = rt.device_properties(0)
    rt.set_device(0)
    stream = rt.create_stream()
    binding = IOBinding(rt, "x", (8, 3, 84, 84), np.float32, True)
    back = IOBinding(rt, "y", (8, 3, 84, 84), np.float32, False)
    data = np.random.default_rng(0).normal(size=(5, 3, 84, 84)).astype(np.float32)
    np.copyto(binding.host.view(5), data)
    t0 = time.perf_counter()
    rt.copy_htod_async(binding.device.ptr, binding.host.ptr, binding.bytes_for(5), stream)
    # device-to-device through the host path: copy device x back into host y
    rt.copy_dtoh_async(back.host.ptr, binding.device.ptr, binding.bytes_for(5), stream)
    rt.synchronize(stream)
    ms = (time.perf_counter() - t0) * 1e3
    equal = bool(np.array_equal(back.host.view(5), data))
    binding.free()
    back.free()
    rt.destroy_stream(stream)
    return {"gpu": name, "compute_capability": cc, "roundtrip_equal": equal,
            "roundtrip_ms_5x3x84x84": round(ms, 3)}


def check_tensorrt(model: Path) -> dict:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"tensorrt not importable: {exc}"}
    from fskd_ros.core.backends import create_backend
    from fskd_ros.core.encoder_file import read_encoder_info

    info = read_encoder_info(model)
    trt = create_backend("tensorrt", model, precision="fp16", max_batch=8)
    ort = create_backend("onnxruntime", model)
    x = np.random.default_rng(0).normal(size=(4, 3, *info.input_size)).astype(np.float32)
    a, b = trt.encode(x), ort.encode(x)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    times = []
    one = x[:1]
    for _ in range(200):
        t0 = time.perf_counter()
        trt.encode(one)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"describe": trt.describe(), "cosine_min_vs_ort": float(cos.min()),
            "p50_ms_b1": float(np.median(times))}


def torch_reference(model: Path) -> dict:
    import torch

    from fskd_ros.core.encoder_file import read_encoder_info
    from fskd_ros.training.models import create_encoder

    info = read_encoder_info(model)
    out = {"torch": torch.__version__, "arch": info.arch, "input_size": info.input_size}
    for arch in (info.arch, "resnet12"):
        net = create_encoder(arch).cuda().eval()
        for dtype in (torch.float32, torch.float16):
            net = net.to(dtype)
            for batch in (1, 8):
                x = torch.randn(batch, 3, *info.input_size, device="cuda", dtype=dtype)
                with torch.no_grad():
                    for _ in range(20):
                        net(x)
                    torch.cuda.synchronize()
                    times = []
                    for _ in range(100):
                        start = torch.cuda.Event(enable_timing=True)
                        end = torch.cuda.Event(enable_timing=True)
                        start.record()
                        net(x)
                        end.record()
                        end.synchronize()
                        times.append(start.elapsed_time(end))
                out[f"{arch}/{str(dtype).split('.')[-1]}/b{batch}_p50_ms"] = round(
                    float(np.median(times)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fskd_ros/models/default_encoder.onnx")
    parser.add_argument("--out", default="gpu_check_out")
    args = parser.parse_args()
    result = {}
    for name, fn in (("buffers", check_buffers), ("tensorrt", lambda: check_tensorrt(Path(args.model))),
                     ("torch_cuda", lambda: torch_reference(Path(args.model)))):
        try:
            result[name] = fn()
        except Exception as exc:  # keep going: report every part
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(name, json.dumps(result[name]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
