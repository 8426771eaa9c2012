"""Encoder backends, chosen by name (a node parameter / CLI flag).

``create_backend("onnxruntime", path)`` or ``create_backend("tensorrt", path)``.
A backend that cannot run raises :class:`BackendError` with the reason; there
is deliberately no silent fallback to another backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

from fskd_ros.core.backends.base import BackendError, EncoderBackend
from fskd_ros.core.encoder_file import EncoderInfo, read_encoder_info


def _onnxruntime(path: Path, info: EncoderInfo, **options: Any) -> EncoderBackend:
    from fskd_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, info, **options)


def _tensorrt(path: Path, info: EncoderInfo, **options: Any) -> EncoderBackend:
    from fskd_ros.core.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, info, **options)


BACKENDS: Dict[str, Callable[..., EncoderBackend]] = {
    "onnxruntime": _onnxruntime,
    "tensorrt": _tensorrt,
}


def available_backends() -> list:
    return sorted(BACKENDS)


def create_backend(name: str, model_path: Path | str, **options: Any) -> EncoderBackend:
    """Create the named backend for an encoder file (metadata is read here)."""
    if name not in BACKENDS:
        raise BackendError(
            f"unknown backend '{name}'; choose one of {', '.join(available_backends())}")
    path = Path(model_path)
    info = read_encoder_info(path)
    return BACKENDS[name](path, info, **options)


__all__ = ["BackendError", "EncoderBackend", "create_backend", "available_backends"]
