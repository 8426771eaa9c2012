"""TensorRT backend: ONNX encoder -> cached TensorRT engine -> name-based I/O inference.

* Build: ``trt.Builder`` + ``OnnxParser``, one optimisation profile for batch
  1..max_batch, FP16 by default, FP32 or INT8 selectable. INT8 uses an
  ``IInt8EntropyCalibrator2`` over a folder of images preprocessed exactly as
  at run time, or, for an ONNX file that already carries Q/DQ nodes (made by
  ``fskd quantize --target tensorrt``: symmetric int8), TensorRT's explicit
  quantisation without calibration.
* Cache: :mod:`engine_cache` (key = ONNX sha256 + TensorRT version + GPU +
  compute capability + precision + input shape + batch range); stale engines
  are rebuilt, or refused when ``allow_build=False``.
* Run: TensorRT 10 name-based API (``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``) with pinned host and device buffers from cuda-python.
  No torch, no pycuda.

``tensorrt`` and ``cuda-python`` are imported lazily; when either, or a GPU,
is missing, construction raises :class:`BackendError` listing every missing
piece and how to install it.

Status: this file has NOT been run against a real TensorRT anywhere in this
project yet (no TensorRT on the development machines); its logic is unit-tested
against fakes. See docs/jetson.md.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from fskd_ros.core.backends.base import BackendError, EncoderBackend
from fskd_ros.core.backends.cuda_buffers import (
    CudaRuntime,
    IOBinding,
    import_cudart,
    stream_handle,
)
from fskd_ros.core.backends.engine_cache import (
    PRECISIONS,
    EngineCache,
    EngineCacheError,
    EngineKey,
    calibration_fingerprint,
)
from fskd_ros.core.encoder_file import INPUT_NAME, OUTPUT_NAME, EncoderInfo, file_sha256

LOG = logging.getLogger("fskd_ros.tensorrt")

TENSORRT_HINT = (
    "On a Jetson (JetPack 6) use JetPack's own TensorRT Python bindings, not pip: "
    "`sudo apt install python3-libnvinfer python3-libnvinfer-dev` (they land in "
    "/usr/lib/python3/dist-packages; create any virtualenv with "
    "`--system-site-packages` so `import tensorrt` finds them). On an x86 "
    "workstation use NVIDIA's TensorRT 10 packages for your CUDA version.")
MIN_TENSORRT_MAJOR = 10
DEFAULT_WORKSPACE_MB = 1024
HEARTBEAT_SECONDS = 15.0


# ---------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------
def import_tensorrt() -> Any:
    """Import TensorRT >= 10 or raise BackendError with the install command."""
    try:
        import tensorrt as trt  # noqa: WPS433 (lazy on purpose)
    except ImportError as exc:
        raise BackendError(f"TensorRT Python bindings are not importable ({exc}). {TENSORRT_HINT}") from exc
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise BackendError(
            f"TensorRT {version} found, but this backend needs TensorRT >= "
            f"{MIN_TENSORRT_MAJOR} (name-based I/O, execute_async_v3): JetPack 6.x ships 10.x. "
            f"{TENSORRT_HINT}")
    return trt


def check_environment(device: int = 0) -> Dict[str, str]:
    """Probe TensorRT, cuda-python and the GPU; report *every* missing piece at once.

    Returns {"tensorrt_version", "gpu_name", "compute_capability"}.
    """
    problems: List[str] = []
    trt = cudart = None
    try:
        trt = import_tensorrt()
    except BackendError as exc:
        problems.append(f"TensorRT: {exc}")
    try:
        cudart = import_cudart()
    except BackendError as exc:
        problems.append(f"cuda-python: {exc}")
    gpu_name = capability = ""
    if cudart is not None:
        try:
            gpu_name, capability = CudaRuntime(cudart).device_properties(device)
        except BackendError as exc:
            problems.append(f"GPU: {exc}")
    if problems:
        raise BackendError(
            "the TensorRT backend cannot run here:\n  - " + "\n  - ".join(problems)
            + "\nUse backend:=onnxruntime on machines without an NVIDIA GPU.")
    return {"tensorrt_version": str(trt.__version__), "gpu_name": gpu_name,
            "compute_capability": capability}


def onnx_has_qdq(path: Path) -> bool:
    """True when the ONNX graph already carries QuantizeLinear nodes (explicit int8)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def make_engine_key(onnx_path: Path, info: EncoderInfo, precision: str, max_batch: int,
                    env: Dict[str, str], opt_batch: int = 1,
                    calibration_files: Sequence[Path] = ()) -> EngineKey:
    height, width = (int(v) for v in info.input_size)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=env["tensorrt_version"],
        gpu_name=env["gpu_name"],
        compute_capability=env["compute_capability"],
        precision=precision,
        input_shape=(3, height, width),
        min_batch=1,
        opt_batch=max(1, min(opt_batch, max_batch)),
        max_batch=max_batch,
        calibration_sha256=calibration_fingerprint(calibration_files) if calibration_files else "",
    )


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------
def _make_logger(trt: Any) -> Any:
    """TensorRT ILogger forwarding to Python logging (kept alive by the caller)."""

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:  # noqa: A003
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                LOG.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.WARNING:
                LOG.warning("TensorRT: %s", msg)
            elif severity == trt.ILogger.INFO:
                LOG.debug("TensorRT: %s", msg)

    return _Logger()


def _make_progress_monitor(trt: Any) -> Optional[Any]:
    """IProgressMonitor that logs top-level phases and steps (TensorRT >= 10)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Progress(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._steps: Dict[str, int] = {}
            self._parents: Dict[str, Optional[str]] = {}

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            with self._lock:
                self._steps[phase_name] = num_steps
                self._parents[phase_name] = parent_phase
                depth = 0
                parent = parent_phase
                while parent is not None and depth < 8:
                    depth += 1
                    parent = self._parents.get(parent)
            if depth <= 1:
                LOG.info("build: %s%s (%d steps)", "  " * depth, phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                total = self._steps.get(phase_name, 0)
                top = self._parents.get(phase_name) is None
            if top and total > 1:
                LOG.info("build: %s %d/%d", phase_name, step + 1, total)
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                top = self._parents.get(phase_name) is None
            if top:
                LOG.info("build: %s done", phase_name)

    return _Progress()


class _Heartbeat:
    """Logs 'still building' every few seconds so a long build is never silent."""

    def __init__(self, label: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.label = label
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            LOG.info("%s: still building, %.0f s elapsed", self.label, time.monotonic() - self._start)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def _make_calibrator(trt: Any, runtime: CudaRuntime, files: Sequence[Path], info: EncoderInfo,
                     batch_size: int, cache_file: Optional[Path]) -> Any:
    """IInt8EntropyCalibrator2 feeding runtime-preprocessed images from pinned memory."""
    from fskd_ros.edge.images import load_batch  # PIL only; same preprocessing as the node

    height, width = (int(v) for v in info.input_size)

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.files = list(files)
            self.index = 0
            self.binding = IOBinding(runtime, INPUT_NAME, (batch_size, 3, height, width),
                                     np.float32, True)
            self.stream = runtime.create_stream()

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.index + batch_size > len(self.files):
                return None
            chunk = self.files[self.index:self.index + batch_size]
            self.index += batch_size
            LOG.info("int8 calibration: batch %d/%d", self.index // batch_size,
                     len(self.files) // batch_size)
            np.copyto(self.binding.host.array, load_batch(chunk, info))
            runtime.copy_htod_async(self.binding.device.ptr, self.binding.host.ptr,
                                    self.binding.host.nbytes, self.stream)
            runtime.synchronize(self.stream)
            return [self.binding.device.ptr]

        def read_calibration_cache(self) -> Optional[bytes]:
            if cache_file is not None and cache_file.is_file():
                LOG.info("int8 calibration: reusing %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_file is not None:
                from fskd_ros.core.backends.engine_cache import atomic_write

                atomic_write(cache_file, bytes(cache))

        def free(self) -> None:
            self.binding.free()
            runtime.destroy_stream(self.stream)

    return _Calibrator()


def build_serialized_engine(
    onnx_path: Path,
    info: EncoderInfo,
    precision: str = "fp16",
    max_batch: int = 8,
    opt_batch: int = 1,
    calibration_files: Sequence[Path] = (),
    calibration_cache: Optional[Path] = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    trt: Any = None,
    runtime: Optional[CudaRuntime] = None,
) -> bytes:
    """ONNX -> serialized engine bytes (TensorRT Python API). Logs progress and duration."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    trt = trt or import_tensorrt()
    runtime = runtime or CudaRuntime()
    height, width = (int(v) for v in info.input_size)
    logger = _make_logger(trt)
    label = f"TensorRT {precision} engine for {Path(onnx_path).name}"
    LOG.info("%s: build started (batch 1..%d, input 3x%dx%d, TensorRT %s); this takes "
             "minutes on a Jetson and happens once per model/precision/JetPack",
             label, max_batch, height, width, trt.__version__)
    start = time.monotonic()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError(f"TensorRT cannot parse {onnx_path}:\n  " + "\n  ".join(errors))
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if INPUT_NAME not in names:
        raise BackendError(f"{onnx_path} has inputs {names}; an fskd encoder has '{INPUT_NAME}'")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 3, height, width),
                      (max(1, min(opt_batch, max_batch)), 3, height, width),
                      (max_batch, 3, height, width))
    config.add_optimization_profile(profile)

    calibrator = None
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            LOG.warning("this GPU reports no fast FP16; the engine may not be faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines fall back to fp16, not fp32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if onnx_has_qdq(Path(onnx_path)):
            LOG.info("int8: the ONNX graph carries Q/DQ nodes; using explicit quantisation "
                     "(no calibration)")
        else:
            files = list(calibration_files)
            if not files:
                raise BackendError(
                    "int8 needs calibration images (--calib-dir DIR with a few hundred "
                    "images like the deployment ones) or a Q/DQ model from `fskd quantize --target tensorrt`")
            calib_batch = max(1, min(8, max_batch, len(files)))
            calib_profile = builder.create_optimization_profile()
            shape = (calib_batch, 3, height, width)
            calib_profile.set_shape(INPUT_NAME, shape, shape, shape)
            config.set_calibration_profile(calib_profile)
            calibrator = _make_calibrator(trt, runtime, files, info, calib_batch, calibration_cache)
            config.int8_calibrator = calibrator

    monitor = _make_progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    try:
        with _Heartbeat(label):
            serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise BackendError(f"{label}: build failed (see the TensorRT errors logged above)")
    data = bytes(serialized)
    LOG.info("%s: build finished in %.1f s (%.1f MB)", label, time.monotonic() - start, len(data) / 1e6)
    return data


def list_images(folder: Path | str, limit: int = 0) -> List[Path]:
    """Images under ``folder`` (recursively), sorted; spread over classes when limited."""
    from fskd_ros.edge.images import list_images as _list

    return _list(folder, limit=limit)


# ---------------------------------------------------------------------------
# backend
# ---------------------------------------------------------------------------
class TensorRTBackend(EncoderBackend):
    name = "tensorrt"

    def __init__(
        self,
        path: Path,
        info: EncoderInfo,
        precision: str = "fp16",
        max_batch: int = 8,
        opt_batch: int = 1,
        cache_dir: Optional[str | Path] = None,
        allow_build: bool = True,
        calib_dir: Optional[str | Path] = None,
        calib_images: int = 512,
        device: int | str = 0,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        warmup: bool = True,
        **unused: Any,
    ) -> None:
        super().__init__(info)
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if int(max_batch) < 1:
            raise BackendError("max_batch must be >= 1")
        device_index = 0 if device in ("cuda", "gpu", "", None) else int(str(device).replace("cuda:", ""))
        env = check_environment(device_index)  # every missing piece, in one message
        self.trt = import_tensorrt()
        self.cuda = CudaRuntime()
        self.cuda.set_device(device_index)
        self.precision = precision
        self.max_batch = int(max_batch)
        self.env = env
        self._lock = threading.Lock()
        self._bindings: Dict[str, IOBinding] = {}
        self.stream = None

        path = Path(path)
        calib_files: List[Path] = []
        if precision == "int8" and calib_dir and not onnx_has_qdq(path):
            calib_files = list_images(calib_dir, limit=calib_images)
        key = make_engine_key(path, info, precision, self.max_batch, env, opt_batch, calib_files)
        cache = EngineCache(cache_dir)
        # keyed like the engine: a new calibration set / TensorRT / GPU never reuses old scales
        calib_cache = cache.root / f"{cache.slot_name(path.name, key)}.{key.digest()[:12]}.calib"

        def build() -> bytes:
            return build_serialized_engine(path, info, precision, self.max_batch, opt_batch,
                                           calib_files, calib_cache, workspace_mb, self.trt, self.cuda)

        try:
            engine_bytes, self.engine_path, self.built_now = cache.get_or_build(
                path.name, key, build, allow_build=allow_build, log=LOG)
        except EngineCacheError as exc:
            raise BackendError(str(exc)) from exc
        self._logger = _make_logger(self.trt)
        self._runtime = self.trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BackendError(
                f"TensorRT could not deserialize {self.engine_path} although its key matched; "
                f"delete it (and its .json) to force a rebuild")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (GPU memory?)")
        try:
            self._allocate()
        except BaseException:
            self.close()
            raise
        if warmup:
            self.warmup()

    # -- setup -------------------------------------------------------------
    def _allocate(self) -> None:
        trt, engine = self.trt, self.engine
        height, width = (int(v) for v in self.info.input_size)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME] or len(outputs) != 1:
            raise BackendError(f"engine I/O {inputs} -> {outputs}; expected ['{INPUT_NAME}'] -> one output")
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
        max_in = tuple(engine.get_tensor_profile_shape(INPUT_NAME, 0)[2])
        if tuple(max_in[1:]) != (3, height, width):
            raise BackendError(f"engine input {max_in} does not match the encoder's 3x{height}x{width}")
        self.max_batch = min(self.max_batch, int(max_in[0]))
        out_shape = list(engine.get_tensor_shape(self.output_name))
        out_shape[0] = self.max_batch
        if any(int(d) < 0 for d in out_shape[1:]):
            raise BackendError(f"engine output {self.output_name} has dynamic non-batch dims {out_shape}")
        if int(out_shape[-1]) != int(self.info.embedding_dim):
            raise BackendError(
                f"engine output dim {out_shape[-1]} != encoder embedding_dim {self.info.embedding_dim}")
        self.stream = self.cuda.create_stream()
        self._bindings[INPUT_NAME] = IOBinding(
            self.cuda, INPUT_NAME, (self.max_batch, 3, height, width),
            trt.nptype(engine.get_tensor_dtype(INPUT_NAME)), True)
        self._bindings[self.output_name] = IOBinding(
            self.cuda, self.output_name, out_shape,
            trt.nptype(engine.get_tensor_dtype(self.output_name)), False)
        for name, binding in self._bindings.items():
            if not self.context.set_tensor_address(name, binding.device.ptr):
                raise BackendError(f"set_tensor_address({name}) failed")

    # -- inference -----------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        count = batch.shape[0]
        inp = self._bindings[INPUT_NAME]
        out = self._bindings[self.output_name]
        np.copyto(inp.host.view(count), batch, casting="same_kind")
        if not self.context.set_input_shape(INPUT_NAME, tuple(batch.shape)):
            raise BackendError(f"set_input_shape({INPUT_NAME}, {batch.shape}) rejected by the engine")
        self.cuda.copy_htod_async(inp.device.ptr, inp.host.ptr, inp.bytes_for(count), self.stream)
        if not self.context.execute_async_v3(stream_handle(self.stream)):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        self.cuda.copy_dtoh_async(out.host.ptr, out.device.ptr, out.bytes_for(count), self.stream)
        self.cuda.synchronize(self.stream)
        return np.array(out.host.view(count), dtype=np.float32, copy=True)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        height, width = (int(v) for v in self.info.input_size)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, height, width):
            raise BackendError(f"expected a (N, 3, {height}, {width}) batch, got {batch.shape}")
        with self._lock:  # one execution context: serialise callers
            parts = [self._run(batch[i:i + self.max_batch])
                     for i in range(0, batch.shape[0], self.max_batch)]
        if not parts:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def describe(self) -> str:
        return (f"tensorrt[{self.precision}, TensorRT {self.env['tensorrt_version']}, "
                f"{self.env['gpu_name']} sm{self.env['compute_capability']}, "
                f"max_batch {self.max_batch}]")

    def close(self) -> None:
        for binding in self._bindings.values():
            try:
                binding.free()
            except BackendError as exc:  # pragma: no cover - teardown best effort
                LOG.warning("freeing %s: %s", binding.name, exc)
        self._bindings.clear()
        if self.stream is not None:
            try:
                self.cuda.destroy_stream(self.stream)
            except BackendError as exc:  # pragma: no cover
                LOG.warning("destroying stream: %s", exc)
            self.stream = None
        self.context = None
        self.engine = None
