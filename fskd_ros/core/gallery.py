"""The gallery: enrolled shots per class, their prototypes, and persistence.

Shots are stored after the method's feature transform (subtract the encoder's
base-class mean, L2-normalise), so a prototype is simply the mean of a class's
stored shots and adding shots updates it without re-encoding old ones. A
gallery records the encoder it was built with and refuses to be used with
another one. On disk it is a single ``.npz`` (arrays + a JSON header as a
unicode scalar), read with ``allow_pickle=False`` and written atomically.
"""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from fskd_ros.core.atomic import atomic_open

GALLERY_FORMAT = 1
MAX_LABEL_LENGTH = 64


class GalleryError(ValueError):
    """A request or file the gallery refuses; the gallery is left unchanged."""


def transform_features(raw: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    """The method's feature transform: centre on the base-class mean, L2-normalise rows."""
    centred = np.atleast_2d(np.asarray(raw, dtype=np.float32)) - base_mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, 1e-12)


def validate_label(label: str) -> str:
    """Labels are short, printable, and not padded with whitespace."""
    if not isinstance(label, str) or not label.strip():
        raise GalleryError("label is empty")
    if label != label.strip():
        raise GalleryError(f"label {label!r} has leading or trailing whitespace")
    if len(label) > MAX_LABEL_LENGTH:
        raise GalleryError(f"label is {len(label)} characters long; at most {MAX_LABEL_LENGTH}")
    if any(unicodedata.category(ch).startswith("C") for ch in label):
        raise GalleryError(f"label {label!r} contains control characters")
    return label


@dataclass
class _ClassEntry:
    shots: np.ndarray  # (k, D) transformed shots
    prototype: np.ndarray  # (D,) mean of shots


class Gallery:
    """Enrolled classes for one encoder. Every change bumps ``version``."""

    def __init__(self, encoder_id: str, embedding_dim: int,
                 base_mean: Optional[np.ndarray] = None,
                 max_classes: int = 1000, max_shots_per_class: int = 1000) -> None:
        self.encoder_id = encoder_id
        self.embedding_dim = int(embedding_dim)
        self.base_mean = (np.zeros(self.embedding_dim, np.float32) if base_mean is None
                          else np.asarray(base_mean, dtype=np.float32).reshape(-1))
        if self.base_mean.shape != (self.embedding_dim,):
            raise GalleryError(f"base_mean has {self.base_mean.size} values, expected {embedding_dim}")
        self.max_classes = max_classes
        self.max_shots_per_class = max_shots_per_class
        self.version = 0
        self._classes: Dict[str, _ClassEntry] = {}

    # -- queries -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, label: str) -> bool:
        return label in self._classes

    @property
    def labels(self) -> List[str]:
        return list(self._classes)

    def shot_counts(self) -> Dict[str, int]:
        return {label: len(entry.shots) for label, entry in self._classes.items()}

    def prototype_matrix(self) -> Tuple[List[str], np.ndarray]:
        """Labels and their L2-normalised prototypes, (C, D)."""
        labels = self.labels
        if not labels:
            return [], np.zeros((0, self.embedding_dim), np.float32)
        protos = np.stack([self._classes[label].prototype for label in labels])
        norms = np.linalg.norm(protos, axis=1, keepdims=True)
        return labels, protos / np.maximum(norms, 1e-12)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return transform_features(raw, self.base_mean)

    # -- changes -----------------------------------------------------------
    def add(self, label: str, raw_embeddings: np.ndarray) -> int:
        """Add shots (raw encoder features, (k, D)) to a class; returns its shot count."""
        validate_label(label)
        raw = np.atleast_2d(np.asarray(raw_embeddings, dtype=np.float32))
        if raw.shape[0] == 0:
            raise GalleryError("no embeddings to enroll")
        if raw.ndim != 2 or raw.shape[1] != self.embedding_dim:
            raise GalleryError(
                f"embeddings have shape {raw.shape}, expected (k, {self.embedding_dim})")
        if not np.all(np.isfinite(raw)):
            raise GalleryError("embeddings contain NaN or infinity")
        existing = self._classes.get(label)
        if existing is None and len(self._classes) >= self.max_classes:
            raise GalleryError(f"gallery is full ({self.max_classes} classes)")
        held = 0 if existing is None else len(existing.shots)
        if held + raw.shape[0] > self.max_shots_per_class:
            raise GalleryError(
                f"'{label}' would hold {held + raw.shape[0]} shots; at most {self.max_shots_per_class}")
        shots = self.transform(raw)
        if existing is None:
            self._classes[label] = _ClassEntry(shots, shots.mean(axis=0))
        else:
            # Incremental mean: old shots are not re-encoded.
            total = held + len(shots)
            prototype = (existing.prototype * held + shots.sum(axis=0)) / total
            self._classes[label] = _ClassEntry(np.concatenate([existing.shots, shots]), prototype)
        self.version += 1
        return len(self._classes[label].shots)

    def remove(self, label: str) -> None:
        if label not in self._classes:
            raise GalleryError(f"no class '{label}' in the gallery")
        del self._classes[label]
        self.version += 1

    def copy(self) -> "Gallery":
        """Independent snapshot (e.g. to write to disk without holding a lock)."""
        twin = Gallery(self.encoder_id, self.embedding_dim, self.base_mean.copy(),
                       self.max_classes, self.max_shots_per_class)
        twin._classes = dict(self._classes)  # entries are replaced, never mutated in place
        twin.version = self.version
        return twin

    def clear(self) -> None:
        if self._classes:
            self._classes.clear()
            self.version += 1

    # -- persistence -------------------------------------------------------
    def save(self, path: Path | str) -> Path:
        """Write atomically: a temporary file in the same folder, then rename."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = self.labels
        header = {
            "format": GALLERY_FORMAT,
            "encoder_id": self.encoder_id,
            "embedding_dim": self.embedding_dim,
            "version": self.version,
            "labels": labels,
            "shots": [len(self._classes[label].shots) for label in labels],
            "saved_at": time.time(),
        }
        shots = (np.concatenate([self._classes[label].shots for label in labels])
                 if labels else np.zeros((0, self.embedding_dim), np.float32))
        with atomic_open(path) as handle:
            np.savez(handle, header=np.array(json.dumps(header)), shots=shots.astype(np.float32),
                     base_mean=self.base_mean)
        return path

    @classmethod
    def load(cls, path: Path | str, encoder_id: Optional[str] = None, **limits: int) -> "Gallery":
        """Read a gallery file; refuse it if corrupt or made with another encoder."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise GalleryError(f"gallery file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                shots = np.asarray(data["shots"], dtype=np.float32)
                base_mean = np.asarray(data["base_mean"], dtype=np.float32)
        except GalleryError:
            raise
        except Exception as exc:  # zipfile, json, missing key, pickled object arrays...
            raise GalleryError(f"{path} is not a readable fskd gallery: {exc}") from exc
        labels, counts, dim = _check_header(path, header, shots, base_mean)
        if encoder_id is not None and header["encoder_id"] != encoder_id:
            raise GalleryError(
                f"{path} was built with encoder '{header['encoder_id']}', but the running "
                f"encoder is '{encoder_id}'; re-enroll with this encoder")
        gallery = cls(header["encoder_id"], dim, base_mean, **limits)
        start = 0
        for label, count in zip(labels, counts):
            class_shots = shots[start:start + count]
            start += count
            gallery._classes[label] = _ClassEntry(class_shots, class_shots.mean(axis=0))
        gallery.version = int(header.get("version", 0))
        return gallery


def _check_header(path: Path, header: object, shots: np.ndarray,
                  base_mean: np.ndarray) -> Tuple[List[str], List[int], int]:
    """Validate a gallery file's header against its arrays; GalleryError on any mismatch."""
    if not isinstance(header, dict):
        raise GalleryError(f"{path}: gallery header is not a JSON object")
    if header.get("format") != GALLERY_FORMAT:
        raise GalleryError(f"{path}: unknown gallery format {header.get('format')!r}")
    labels, counts, dim = header.get("labels"), header.get("shots"), header.get("embedding_dim")
    if not isinstance(header.get("encoder_id"), str) or not isinstance(dim, int) or dim <= 0:
        raise GalleryError(f"{path}: gallery header lacks a valid encoder_id / embedding_dim")
    if (not isinstance(labels, list) or not isinstance(counts, list) or len(labels) != len(counts)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts)):
        raise GalleryError(f"{path}: gallery header has malformed labels/shots")
    if len(set(labels)) != len(labels):
        raise GalleryError(f"{path}: gallery header repeats a label")
    for label in labels:
        try:
            validate_label(label)
        except GalleryError as exc:
            raise GalleryError(f"{path}: {exc}") from exc
    if (shots.ndim != 2 or shots.shape[1] != dim or shots.shape[0] != sum(counts)
            or base_mean.shape != (dim,)):
        raise GalleryError(f"{path}: header and arrays disagree (file damaged?)")
    if not (np.all(np.isfinite(shots)) and np.all(np.isfinite(base_mean))):
        raise GalleryError(f"{path}: gallery holds NaN or infinite values")
    if not isinstance(header.get("version", 0), int):
        raise GalleryError(f"{path}: gallery version is not an integer")
    return labels, counts, dim
