"""Nearest-prototype few-shot classifier with open-set rejection.

The API follows easyfsl's ``FewShotClassifier``: ``process_support_set`` with
labelled support embeddings, then ``forward`` on query embeddings. Prototypes
are class means of transformed shots (see :mod:`fskd_ros.core.gallery`);
queries are scored by cosine similarity to each normalised prototype, and a
best score below ``threshold`` marks the query unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from fskd_ros.core.gallery import Gallery


@dataclass
class Prediction:
    label: str  # nearest class ("" when the gallery is empty)
    score: float  # cosine similarity to that class prototype
    unknown: bool  # score below threshold, or nothing enrolled
    top_labels: List[str] = field(default_factory=list)
    top_scores: List[float] = field(default_factory=list)


class PrototypeClassifier:
    """Few-shot classifier over a :class:`Gallery` (which it may share with a node)."""

    def __init__(self, gallery: Gallery, threshold: float = 0.0, top_k: int = 3) -> None:
        self.gallery = gallery
        self.threshold = float(threshold)
        self.top_k = max(1, int(top_k))
        self._cache_version: Optional[int] = None
        self._labels: List[str] = []
        self._prototypes = np.zeros((0, gallery.embedding_dim), np.float32)

    def process_support_set(self, support_embeddings: np.ndarray,
                            support_labels: Sequence[str]) -> None:
        """Replace the gallery content with a labelled support set (raw features)."""
        support_embeddings = np.atleast_2d(np.asarray(support_embeddings, np.float32))
        if len(support_labels) != len(support_embeddings):
            raise ValueError("one label per support embedding is needed")
        self.gallery.clear()
        for label in dict.fromkeys(support_labels):
            rows = [i for i, lab in enumerate(support_labels) if lab == label]
            self.gallery.add(label, support_embeddings[rows])

    def _refresh(self) -> None:
        if self._cache_version != self.gallery.version:
            self._labels, self._prototypes = self.gallery.prototype_matrix()
            self._cache_version = self.gallery.version

    def forward(self, query_embeddings: np.ndarray) -> np.ndarray:
        """Cosine scores (N, C) of raw query features against every prototype."""
        self._refresh()
        queries = self.gallery.transform(query_embeddings)
        return queries @ self._prototypes.T

    @property
    def labels(self) -> List[str]:
        self._refresh()
        return list(self._labels)

    def predict(self, query_embeddings: np.ndarray) -> List[Prediction]:
        scores = self.forward(query_embeddings)
        labels = self._labels
        results = []
        for row in scores:
            if not labels:
                results.append(Prediction("", 0.0, True))
                continue
            order = np.argsort(-row)[: self.top_k]
            best = int(order[0])
            results.append(Prediction(
                label=labels[best], score=float(row[best]),
                # NaN (a broken encoder output) must never pass as a known class.
                unknown=not bool(row[best] >= self.threshold),
                top_labels=[labels[i] for i in order],
                top_scores=[float(row[i]) for i in order]))
        return results
