"""The one small interface every encoder backend implements."""

from __future__ import annotations

import abc

import numpy as np

from fskd_ros.core.encoder_file import EncoderInfo


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run (clear message, no fallback)."""


class EncoderBackend(abc.ABC):
    """Runs an encoder: (N, 3, H, W) float32 normalised batch -> (N, D) float32."""

    name: str = "abstract"

    def __init__(self, info: EncoderInfo) -> None:
        self.info = info

    @abc.abstractmethod
    def encode(self, batch: np.ndarray) -> np.ndarray:
        """Return raw pooled features for a preprocessed batch."""

    def warmup(self, iterations: int = 3) -> None:
        """Run a few dummy batches so the first real frame is not slow."""
        height, width = self.info.input_size
        dummy = np.zeros((1, 3, height, width), dtype=np.float32)
        for _ in range(iterations):
            self.encode(dummy)

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release device resources (no-op by default)."""
