"""``fskd quantize MODEL --calib-dir DIR --output X.onnx``: int8 encoder for the CPU path.

ONNX Runtime static quantisation: weights int8 per output channel (7-bit
range by default, see below), activations uint8 with ranges calibrated on real images preprocessed exactly like the
runtime (``fskd_ros.edge.images``). Two layouts exist and their speed depends
on the CPU, so ``--format auto`` (default) builds both, times them on this
machine and keeps the faster:

* ``qoperator``: fused QLinearConv / QLinearMatMul / ... operators;
* ``qdq``: QuantizeLinear/DequantizeLinear pairs around float ops, which ORT
  fuses at load time (also the form TensorRT consumes for explicit int8).

Weights use ``reduce_range`` (7-bit) by default: x86 CPUs without VNNI run
u8 x s8 products through VPMADDUBSW, whose 16-bit intermediate saturates with
full-range weights. On the distilled encoder that broke some embeddings
outright (cosine to float min 0.28, mean 0.94); with reduce_range min 0.995,
mean 0.999, at the same speed. ``--full-range`` opts out (VNNI / ARM CPUs).

The output keeps the fskd metadata (input size, mean/std, base mean) with a
new content hash and "int8" in the description, so the runtime uses it like
any other encoder file: ``backend:=onnxruntime model_path:=X.onnx``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from fskd_ros.core.encoder_file import (
    INPUT_NAME,
    EncoderInfo,
    graph_hash,
    read_encoder_info,
    resolve_encoder_path,
    write_encoder_info,
)
from fskd_ros.edge.images import list_images, load_batch

LOG = logging.getLogger("fskd_ros.quantize")
FORMATS = ("qoperator", "qdq")
# Conv/MatMul/Gemm carry nearly all the FLOPs; LayerNorm/Softmax/GELU stay float.
DEFAULT_OPS = ("Conv", "MatMul", "Gemm")


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed image batches."""

    def __init__(self, files: Sequence[Path], info: EncoderInfo, batch_size: int = 8) -> None:
        self.files = list(files)
        self.info = info
        self.batch_size = batch_size
        self._iter: Optional[Iterator[Dict[str, np.ndarray]]] = None

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        for start in range(0, len(self.files), self.batch_size):
            yield {INPUT_NAME: load_batch(self.files[start:start + self.batch_size], self.info)}

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def _preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph cleanup); falls back on failure."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return dst
    except Exception as exc:  # model-dependent; quantisation still works without it
        LOG.warning("quant_pre_process failed (%s); quantising the original graph", exc)
        return src


def quantize_file(src: Path, dst: Path, files: Sequence[Path], info: EncoderInfo, fmt: str,
                  per_channel: bool = True, reduce_range: bool = True,
                  op_types: Sequence[str] = DEFAULT_OPS, method: str = "minmax",
                  symmetric_int8_activations: bool = False) -> None:
    """Static int8 quantisation of ``src`` into ``dst`` (no metadata handling).

    ``symmetric_int8_activations``: int8 activations with zero point 0, which
    TensorRT's explicit quantisation requires (ORT's CPU kernels prefer uint8).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(
        str(src), str(dst), _Reader(files, info),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=list(op_types) if op_types else None,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QInt8 if symmetric_int8_activations else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax,
                          "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"ActivationSymmetric": symmetric_int8_activations,
                       "WeightSymmetric": True},
    )


def time_models(paths: Dict[str, Path], info: EncoderInfo, batch: int = 1,
                iterations: int = 60, threads: int = 0, rounds: int = 6) -> Dict[str, float]:
    """p50 latency (ms) per model with the runtime's ONNX Runtime settings.

    Rounds are interleaved across the models so background load on a shared
    machine hits every candidate alike (one model after the other was noisy
    enough to pick the slower layout).
    """
    from fskd_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    backends = {k: OnnxRuntimeBackend(Path(p), info, intra_op_threads=threads)
                for k, p in paths.items()}
    x = np.random.default_rng(0).normal(
        size=(batch, 3, int(info.input_size[0]), int(info.input_size[1]))).astype(np.float32)
    times: Dict[str, List[float]] = {k: [] for k in backends}
    for backend in backends.values():
        for _ in range(5):
            backend.encode(x)
    for _ in range(rounds):
        for name, backend in backends.items():
            for _ in range(max(1, iterations // rounds)):
                start = time.perf_counter()
                backend.encode(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def attach_metadata(dst: Path, info: EncoderInfo, note: str) -> EncoderInfo:
    """Copy the float model's fskd metadata onto the quantised file (new hash, int8 note)."""
    import onnx

    model = onnx.load(str(dst))
    del model.metadata_props[:]
    new_info = EncoderInfo(**{**vars(info)})
    new_info.content_hash = graph_hash(model.SerializeToString())
    original = info.description or info.arch
    new_info.description = f"[int8] {note}. Float source: {original}"
    write_encoder_info(model, new_info)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return new_info


def quantize_encoder(model: Path, calib_dir: Path, output: Path, fmt: str = "auto",
                     calib_images: int = 256, per_channel: bool = True,
                     reduce_range: bool = True, op_types: Sequence[str] = DEFAULT_OPS,
                     method: str = "minmax", threads: int = 0,
                     target: str = "cpu") -> Dict[str, object]:
    """Quantise ``model`` into ``output``; returns a report (timings per format).

    ``target="tensorrt"``: a Q/DQ graph with symmetric int8 activations and
    full-range weights, for ``fskd build-engine --precision int8`` (explicit
    quantisation); not meant for ONNX Runtime's CPU kernels.
    """
    info = read_encoder_info(model)
    trt_target = target == "tensorrt"
    if trt_target:
        fmt, reduce_range = "qdq", False
    files = list_images(calib_dir, limit=calib_images)
    report: Dict[str, object] = {"model": str(model), "calib_dir": str(calib_dir),
                                 "calib_images": len(files), "per_channel": per_channel,
                                 "reduce_range": reduce_range, "op_types": list(op_types),
                                 "method": method, "target": target}
    formats = FORMATS if fmt == "auto" else (fmt,)
    with tempfile.TemporaryDirectory(prefix="fskd-quant-", dir=str(output.parent)) as tmpdir:
        tmp = Path(tmpdir)
        source = _preprocess(model, tmp / "pre.onnx")
        timings: Dict[str, float] = {}
        start = time.monotonic()
        for name in formats:
            t0 = time.monotonic()
            quantize_file(source, tmp / f"{name}.onnx", files, info, name, per_channel,
                          reduce_range, op_types, method, symmetric_int8_activations=trt_target)
            LOG.info("%s quantised in %.1f s", name, time.monotonic() - t0)
        if len(formats) > 1:
            candidates = {name: tmp / f"{name}.onnx" for name in formats}
            timings = time_models({**candidates, "float": model}, info, threads=threads)
        chosen = min(formats, key=lambda n: timings[n]) if timings else formats[0]
        if timings:
            report["p50_ms_batch1"] = {k: round(v, 3) for k, v in timings.items()}
            if timings[chosen] >= timings["float"]:
                report["warning"] = (
                    f"int8 ({timings[chosen]:.2f} ms) is not faster than float "
                    f"({timings['float']:.2f} ms) on this CPU: keep the float model here "
                    f"(see docs/jetson.md, 'Why int8 does not speed up the shipped encoder')")
                LOG.warning(report["warning"])
        report["format"] = chosen
        report["quantize_seconds"] = round(time.monotonic() - start, 1)
        output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / f"{chosen}.onnx", output)
    note = (f"ONNX Runtime static int8 ({chosen}, weights int8 "
            f"{'per-channel' if per_channel else 'per-tensor'}"
            f"{' 7-bit reduce_range' if reduce_range else ''}, activations "
            f"{'int8 symmetric (TensorRT Q/DQ)' if trt_target else 'uint8'} {method}, "
            f"ops {','.join(op_types) or 'all'}, {len(files)} calibration images from "
            f"{Path(calib_dir).name})")
    new_info = attach_metadata(output, info, note)
    report["output"] = str(output)
    report["content_hash"] = new_info.content_hash
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="default",
                        help="float ONNX encoder ('default' = the shipped encoder)")
    parser.add_argument("--calib-dir", required=True,
                        help="folder of calibration images (sub-folders per class are fine)")
    parser.add_argument("--output", "-o", required=True, help="int8 ONNX encoder to write")
    parser.add_argument("--format", choices=("auto",) + FORMATS, default="auto",
                        help="auto: build both layouts and keep the faster on this CPU")
    parser.add_argument("--calib-images", type=int, default=256,
                        help="calibration images, spread over sub-folders (0 = all)")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weight range instead of the default 7-bit (reduce_range). "
                             "Only for CPUs with VNNI/ARM dot-product: on AVX2 without VNNI "
                             "full-range u8s8 saturates (measured cosine to float: min 0.28 "
                             "vs 0.995 with the default)")
    parser.add_argument("--ops", default=",".join(DEFAULT_OPS),
                        help="op types to quantise, comma separated ('' = all ORT supports)")
    parser.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    parser.add_argument("--target", choices=("cpu", "tensorrt"), default="cpu",
                        help="tensorrt: Q/DQ with symmetric int8 activations for "
                             "`fskd build-engine --precision int8` (explicit quantisation)")
    parser.add_argument("--threads", type=int, default=0, help="ORT threads for the timing runs")
    parser.add_argument("--report", default=None, help="write the JSON report here too")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = resolve_encoder_path(args.model)
    ops = tuple(op for op in args.ops.split(",") if op)
    report = quantize_encoder(model, Path(args.calib_dir).expanduser(), Path(args.output),
                              args.format, args.calib_images, not args.per_tensor,
                              not args.full_range, ops, args.method, args.threads, args.target)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 0
