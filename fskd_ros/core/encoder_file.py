"""Encoder files: ONNX models plus the metadata the runtime needs.

An encoder file is a plain ONNX model with one float32 input ``images``
(N, 3, H, W), already resized and normalised, and one output ``embedding``
(N, D) holding the raw pooled features. Everything the runtime must know to
use it travels inside the file as ONNX ``metadata_props`` under the key
``fskd`` (a JSON object), so a model can never be paired with the wrong
preprocessing or base-class mean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # onnx is imported lazily at run time
    import onnx

METADATA_KEY = "fskd"
FORMAT_VERSION = 1
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"


class EncoderFileError(ValueError):
    """The encoder file is missing, unreadable or lacks fskd metadata."""


@dataclass
class EncoderInfo:
    """What the runtime needs to know about an encoder, read from its file."""

    arch: str
    input_size: List[int]  # [height, width]
    mean: List[float]  # per-channel RGB normalisation, applied to [0, 1] pixels
    std: List[float]
    embedding_dim: int
    base_mean: List[float] = field(default_factory=list)  # base-class mean feature
    trained: bool = True  # False: random weights, accuracy is meaningless
    description: str = ""
    content_hash: str = ""  # sha256 of the exported graph, before metadata
    format_version: int = FORMAT_VERSION

    @property
    def encoder_id(self) -> str:
        """Stable identifier: architecture plus a short content hash."""
        return f"{self.arch}-{self.content_hash[:12]}" if self.content_hash else self.arch

    def base_mean_array(self) -> np.ndarray:
        if not self.base_mean:
            return np.zeros(self.embedding_dim, dtype=np.float32)
        return np.asarray(self.base_mean, dtype=np.float32)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "EncoderInfo":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EncoderFileError(f"fskd metadata is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise EncoderFileError("fskd metadata must be a JSON object")
        missing = [k for k in ("arch", "input_size", "mean", "std", "embedding_dim") if k not in raw]
        if missing:
            raise EncoderFileError(f"fskd metadata lacks {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        info = cls(**{k: v for k, v in raw.items() if k in known})
        if int(info.format_version) > FORMAT_VERSION:
            raise EncoderFileError(
                f"encoder metadata format {info.format_version} is newer than this "
                f"fskd_ros understands ({FORMAT_VERSION}); upgrade fskd_ros")
        if len(info.input_size) != 2 or len(info.mean) != 3 or len(info.std) != 3:
            raise EncoderFileError("fskd metadata: input_size needs 2 values, mean/std 3")
        if info.base_mean and len(info.base_mean) != info.embedding_dim:
            raise EncoderFileError(
                f"fskd metadata: base_mean has {len(info.base_mean)} values, "
                f"embedding_dim is {info.embedding_dim}")
        return info


def graph_hash(model_bytes: bytes) -> str:
    """sha256 of serialized ONNX bytes (used as content hash at export)."""
    return hashlib.sha256(model_bytes).hexdigest()


def file_sha256(path: Path | str) -> str:
    """sha256 of a whole file; the engine cache keys on this."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_encoder_info(path: Path | str) -> EncoderInfo:
    """Read the fskd metadata of an ONNX encoder without loading weights twice."""
    import onnx  # runtime dependency; light compared with a session

    path = Path(path)
    if not path.is_file():
        raise EncoderFileError(f"encoder file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise EncoderFileError(f"{path} is not a readable ONNX model: {exc}") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise EncoderFileError(
            f"{path} has no '{METADATA_KEY}' metadata; export it with `fskd export`")
    return EncoderInfo.from_json(props[METADATA_KEY])


def write_encoder_info(model: "onnx.ModelProto", info: EncoderInfo) -> None:
    """Attach (or replace) the fskd metadata on an in-memory ONNX model."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = info.to_json()


def default_encoder_path() -> Path:
    """The encoder shipped with the package (installed next to this module)."""
    return Path(__file__).resolve().parent.parent / "models" / "default_encoder.onnx"


def resolve_encoder_path(value: Optional[str]) -> Path:
    """Empty or 'default' selects the shipped encoder; anything else is a path."""
    if not value or value == "default":
        return default_encoder_path()
    return Path(value).expanduser()


def as_float_list(values: Sequence[float]) -> List[float]:
    return [float(v) for v in values]
