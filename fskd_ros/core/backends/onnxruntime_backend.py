"""ONNX Runtime backend: CPU everywhere, CUDA where the provider is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fskd_ros.core.backends.base import BackendError, EncoderBackend
from fskd_ros.core.encoder_file import INPUT_NAME, EncoderInfo


class OnnxRuntimeBackend(EncoderBackend):
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        info: EncoderInfo,
        providers: Optional[Sequence[str]] = None,
        intra_op_threads: int = 0,
        device: str = "cpu",
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
        options = ort.SessionOptions()
        # Full graph optimisation fuses MobileViT's attention/LayerNorm ops.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=list(providers))
        except Exception as exc:
            raise BackendError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.providers = self.session.get_providers()
        self.output_name = self.session.get_outputs()[0].name

    def encode(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (features,) = self.session.run([self.output_name], {INPUT_NAME: batch})
        return features.astype(np.float32, copy=False)

    def describe(self) -> str:
        return f"onnxruntime[{','.join(self.providers)}]"
