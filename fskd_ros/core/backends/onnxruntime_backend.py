"""ONNX Runtime backend: CPU everywhere, CUDA where the provider is installed.

Session settings (measured with bench/ort_tuning.py, see docs/jetson.md):

* ``ORT_ENABLE_ALL`` graph optimisation: fuses MobileViT's LayerNorm / GELU /
  attention and Conv+activation; ~1.8x faster than ``basic`` on the shipped
  encoder and ~1.6x on ResNet12 here.
* sequential executor (the parallel one was 3x slower: the graph is a chain);
  ``inter_op_num_threads=1``.
* CPU memory arena and memory-pattern planning on (turning the arena off cost
  ~1.5x): a fixed input shape reuses the same buffers every frame.
* ``intra_op_threads``: 0 = ONNX Runtime's default (one per physical core). On a
  machine shared with other busy processes, 1 thread was the fastest for a
  batch of 1 (no waiting on a descheduled worker); ``spinning=False`` stops idle
  worker threads from burning CPU between frames (useful on a robot where other
  nodes need the cores), at a small latency cost when the CPU is idle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fskd_ros.core.backends.base import BackendError, EncoderBackend
from fskd_ros.core.encoder_file import INPUT_NAME, EncoderInfo


def make_session_options(ort, intra_op_threads: int = 0, spinning: Optional[bool] = None):
    """The tuned SessionOptions used by the runtime (and by the benchmarks)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    if intra_op_threads > 0:
        options.intra_op_num_threads = int(intra_op_threads)
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OnnxRuntimeBackend(EncoderBackend):
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        info: EncoderInfo,
        providers: Optional[Sequence[str]] = None,
        intra_op_threads: int = 0,
        device: str = "cpu",
        spinning: Optional[bool] = None,
    ) -> None:
        super().__init__(info)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise BackendError("onnxruntime is not installed: pip install onnxruntime") from exc
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if device == "cuda":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise BackendError(
                        "device=cuda asked for, but this onnxruntime has no "
                        "CUDAExecutionProvider (install onnxruntime-gpu)")
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        options = make_session_options(ort, intra_op_threads, spinning)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=list(providers))
        except Exception as exc:
            raise BackendError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.providers = self.session.get_providers()
        self.output_name = self.session.get_outputs()[0].name
        self.intra_op_threads = int(intra_op_threads)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (features,) = self.session.run([self.output_name], {INPUT_NAME: batch})
        return features.astype(np.float32, copy=False)

    def describe(self) -> str:
        threads = self.intra_op_threads or "auto"
        return f"onnxruntime[{','.join(self.providers)}, threads={threads}]"
