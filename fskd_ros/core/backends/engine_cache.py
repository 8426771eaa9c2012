"""Persistent TensorRT engine cache, keyed so a stale engine is never loaded.

A serialized TensorRT engine only runs on the TensorRT version and the GPU it
was built for, and it silently encodes the ONNX graph, the precision and the
optimisation profile it was built with. Like jetson-inference's ``tensorNet``
this cache stores, next to every engine, a JSON sidecar with the full key:

* sha256 of the ONNX file,
* TensorRT version,
* GPU name and compute capability,
* precision (fp16 / fp32 / int8) and, for int8, a hash of the calibration set,
* input shape (C, H, W) and the batch range of the optimisation profile.

On load the sidecar must parse, its key must equal the key of the current
environment, and the engine file must have the size and sha256 the sidecar
recorded (a truncated copy or a half-written file is caught here). Anything
else is *stale*: it is rebuilt, or - when building is disabled - refused with
a message that says why and how to rebuild. Both files are written atomically
(temp file in the same folder + ``os.replace``), sidecar last.

Everything in this module is pure Python: the TensorRT-specific parts (probing
the environment, building) are passed in as callables, so the logic is tested
without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from fskd_ros.core.atomic import atomic_write_bytes

LOG = logging.getLogger("fskd_ros.engine_cache")

CACHE_ENV = "FSKD_ENGINE_CACHE"
KEY_FORMAT = 1
PRECISIONS = ("fp16", "fp32", "int8")


class EngineCacheError(RuntimeError):
    """A cached engine is missing or stale and building it is not allowed."""


def default_cache_dir() -> Path:
    """$FSKD_ENGINE_CACHE, else $XDG_CACHE_HOME/fskd_ros/engines, else ~/.cache/...

    Deliberately not /tmp: engines take minutes to build on a Jetson and /tmp
    is wiped at every boot.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fskd_ros" / "engines"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two engines are interchangeable iff keys are equal."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" on Orin
    precision: str
    input_shape: Tuple[int, int, int]  # (C, H, W)
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    calibration_sha256: str = ""  # int8 only: hash of the calibration image list
    key_format: int = KEY_FORMAT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise ValueError(
                f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    def to_dict(self) -> Dict[str, object]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "EngineKey":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown key fields {sorted(unknown)}")
        values = dict(data)
        values["input_shape"] = tuple(values["input_shape"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def differences(self, other: "EngineKey") -> Dict[str, Tuple[object, object]]:
        """Fields that differ: {name: (self value, other value)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs.get(k)) for k in mine if mine[k] != theirs.get(k)}


@dataclass
class CacheStatus:
    """Outcome of checking a cache slot."""

    state: str  # "valid", "missing", "stale"
    engine_path: Path
    sidecar_path: Path
    reason: str = ""
    sidecar: Dict[str, object] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Engines and sidecars are written atomically (see fskd_ros.core.atomic)."""
    atomic_write_bytes(path, data)


def calibration_fingerprint(files: Sequence[Path | str]) -> str:
    """Hash of the calibration set (names, sizes, mtimes): a new set means a new int8 engine."""
    digest = hashlib.sha256()
    for item in sorted(str(f) for f in files):
        try:
            stat = os.stat(item)
            digest.update(f"{os.path.basename(item)}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
        except OSError:
            digest.update(f"{os.path.basename(item)}:missing\n".encode())
    return digest.hexdigest()


class EngineCache:
    """A folder of ``<slot>.engine`` + ``<slot>.json`` pairs.

    A *slot* is named after what the user chose (model name, precision, input
    size, max batch); what the environment decides (ONNX content, TensorRT
    version, GPU) is checked through the sidecar, so after a JetPack upgrade
    the same slot is found, recognised as stale and rebuilt in place.
    """

    def __init__(self, root: Optional[Path | str] = None) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()

    # -- naming ---------------------------------------------------------
    def slot_name(self, model_name: str, key: EngineKey) -> str:
        _, height, width = key.input_shape
        return (f"{_slug(Path(model_name).stem)}.{key.precision}."
                f"{height}x{width}.b{key.max_batch}")

    def paths(self, model_name: str, key: EngineKey) -> Tuple[Path, Path]:
        slot = self.slot_name(model_name, key)
        return self.root / f"{slot}.engine", self.root / f"{slot}.json"

    # -- checking -------------------------------------------------------
    def check(self, model_name: str, key: EngineKey) -> CacheStatus:
        """Is there a usable engine for ``key``? Never trusts a file it cannot verify."""
        engine_path, sidecar_path = self.paths(model_name, key)
        status = CacheStatus("missing", engine_path, sidecar_path)
        if not engine_path.exists() and not sidecar_path.exists():
            status.reason = "no cached engine"
            return status
        status.state = "stale"
        if not engine_path.is_file():
            status.reason = "sidecar without engine file"
            return status
        if not sidecar_path.is_file():
            status.reason = "engine without sidecar (unknown origin)"
            return status
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
            if not isinstance(sidecar, dict):
                raise ValueError("not a JSON object")
            cached_key = EngineKey.from_dict(sidecar["key"])
            expected_size = int(sidecar["engine_bytes"])
            expected_hash = str(sidecar["engine_sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            status.reason = f"corrupt sidecar ({type(exc).__name__}: {exc})"
            return status
        status.sidecar = sidecar
        diff = key.differences(cached_key)
        if diff:
            parts = [f"{name}: cached {old_new[1]!r}, now {old_new[0]!r}"
                     for name, old_new in sorted(diff.items())]
            status.reason = "key mismatch (" + "; ".join(parts) + ")"
            return status
        size = engine_path.stat().st_size
        if size != expected_size:
            status.reason = f"engine file is {size} bytes, sidecar says {expected_size} (truncated?)"
            return status
        if _sha256_file(engine_path) != expected_hash:
            status.reason = "engine file content does not match its sidecar hash"
            return status
        status.state = "valid"
        status.reason = "key and content match"
        return status

    # -- reading / writing ----------------------------------------------
    def load(self, model_name: str, key: EngineKey) -> bytes:
        """Bytes of a verified engine, else EngineCacheError (never a blind load)."""
        status = self.check(model_name, key)
        if not status.valid:
            raise EngineCacheError(
                f"no usable engine at {status.engine_path}: {status.reason}")
        data = status.engine_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != status.sidecar.get("engine_sha256"):
            raise EngineCacheError(f"{status.engine_path} changed while being read")
        return data

    def store(self, model_name: str, key: EngineKey, engine: bytes,
              extra: Optional[Dict[str, object]] = None) -> Path:
        """Atomically write engine then sidecar; returns the engine path."""
        engine_path, sidecar_path = self.paths(model_name, key)
        # Drop the old sidecar first: if we crash between the two writes the
        # slot reads as "engine without sidecar" (stale), never as valid.
        try:
            sidecar_path.unlink()
        except FileNotFoundError:
            pass
        atomic_write(engine_path, engine)
        sidecar = {
            "key": key.to_dict(),
            "key_digest": key.digest(),
            "engine_bytes": len(engine),
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "model_name": Path(model_name).name,
            "created_unix": time.time(),
        }
        if extra:
            sidecar.update({k: v for k, v in extra.items() if k not in sidecar})
        atomic_write(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
        return engine_path

    def get_or_build(
        self,
        model_name: str,
        key: EngineKey,
        build: Callable[[], bytes],
        allow_build: bool = True,
        log: Optional[logging.Logger] = None,
    ) -> Tuple[bytes, Path, bool]:
        """Return (engine bytes, engine path, built_now).

        A stale or missing slot is rebuilt with ``build()`` (timed and logged)
        or, with ``allow_build=False``, refused with EngineCacheError naming the
        reason and the command that builds it ahead of time.
        """
        log = log or LOG
        status = self.check(model_name, key)
        if status.valid:
            log.info("engine cache hit: %s", status.engine_path)
            return self.load(model_name, key), status.engine_path, False
        if not allow_build:
            raise EngineCacheError(
                f"TensorRT engine {status.engine_path} is {status.state}: {status.reason}. "
                f"Building is disabled (allow_build=False); build it ahead of time with "
                f"`fskd build-engine {model_name} --precision {key.precision} "
                f"--max-batch {key.max_batch} --cache-dir {self.root}` "
                f"or allow building on first launch.")
        if status.state == "stale":
            log.warning("engine cache: %s is stale (%s); rebuilding", status.engine_path,
                        status.reason)
        else:
            log.info("engine cache: no engine for %s yet; building", status.engine_path.name)
        start = time.monotonic()
        engine = build()
        seconds = time.monotonic() - start
        if not engine:
            raise EngineCacheError("TensorRT returned an empty engine; see the build log above")
        path = self.store(model_name, key, engine, extra={"build_seconds": round(seconds, 2)})
        log.info("engine built in %.1f s (%.1f MB) and cached at %s", seconds,
                 len(engine) / 1e6, path)
        return engine, path, True
