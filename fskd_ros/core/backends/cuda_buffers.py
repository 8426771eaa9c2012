"""Device and pinned host buffers through cuda-python's runtime API (no torch, no pycuda).

cuda-python moved its runtime bindings: ``cuda.bindings.runtime`` (cuda-python
>= 12.6) and the older ``cuda.cudart`` (deprecated, still shipped for a
while). Both expose the same functions, each returning a tuple whose first
element is a ``cudaError_t``. Every call goes through :meth:`CudaRuntime.call`,
which turns a non-zero status into a :class:`BackendError` naming the call.

The runtime module can be injected (``CudaRuntime(module)``); the tests use a
host-memory fake to exercise this code without a GPU.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from fskd_ros.core.backends.base import BackendError

CUDA_PYTHON_HINT = (
    "install cuda-python matching the CUDA major version of your JetPack/driver "
    "(JetPack 6 = CUDA 12.x: `pip install 'cuda-python>=12,<13'`; check the CUDA "
    "version with `cat /usr/local/cuda/version.json` or `nvcc --version`)")


def import_cudart() -> Any:
    """Import cuda-python's runtime module (new location first, then the old one)."""
    errors = []
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6

        return cudart
    except ImportError as exc:
        errors.append(f"cuda.bindings.runtime: {exc}")
    try:
        from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6

        return cudart
    except ImportError as exc:
        errors.append(f"cuda.cudart: {exc}")
    raise BackendError(
        "cuda-python is not installed or too old for the TensorRT backend ("
        + "; ".join(errors) + "); " + CUDA_PYTHON_HINT)


class CudaRuntime:
    """Thin checked wrapper around the cudart module."""

    def __init__(self, module: Any = None) -> None:
        self.rt = module if module is not None else import_cudart()

    def _error_text(self, status: Any) -> str:
        try:
            _, name = self.rt.cudaGetErrorName(status)
            _, text = self.rt.cudaGetErrorString(status)
            name = name.decode() if isinstance(name, bytes) else str(name)
            text = text.decode() if isinstance(text, bytes) else str(text)
            return f"{name}: {text}"
        except Exception:  # the error path must never raise something else
            return str(status)

    def call(self, what: str, result: Any) -> Any:
        """Check a cuda-python result tuple; return its payload (None, one value or a tuple)."""
        if not isinstance(result, tuple):
            result = (result,)
        status, rest = result[0], result[1:]
        if int(status) != 0:
            raise BackendError(f"CUDA call {what} failed: {self._error_text(status)}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    # -- device discovery -------------------------------------------------
    def device_count(self) -> int:
        result = self.rt.cudaGetDeviceCount()
        status = result[0]
        if int(status) != 0:
            raise BackendError(
                "no usable CUDA GPU: cudaGetDeviceCount failed with "
                f"{self._error_text(status)}. On a Jetson check that the NVIDIA driver is "
                "loaded (`ls /dev/nvhost*`, run `sudo tegrastats`) and that the process "
                "can access the GPU (user in the `video` group / container started with "
                "`--runtime nvidia`).")
        return int(result[1])

    def device_properties(self, device: int = 0) -> Tuple[str, str]:
        """(GPU name, compute capability "major.minor") of ``device``; BackendError if none."""
        count = self.device_count()
        if count <= 0:
            raise BackendError("no CUDA GPU found (cudaGetDeviceCount returned 0)")
        if not 0 <= device < count:
            raise BackendError(f"CUDA device {device} does not exist ({count} visible)")
        props = self.call("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(device))
        name = props.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
        return str(name).strip(), f"{int(props.major)}.{int(props.minor)}"

    def set_device(self, device: int) -> None:
        self.call("cudaSetDevice", self.rt.cudaSetDevice(device))

    # -- streams and copies ----------------------------------------------
    def create_stream(self) -> Any:
        return self.call("cudaStreamCreate", self.rt.cudaStreamCreate())

    def destroy_stream(self, stream: Any) -> None:
        self.call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def synchronize(self, stream: Any) -> None:
        self.call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def copy_htod_async(self, device_ptr: int, host_ptr: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync(HtoD)",
                  self.rt.cudaMemcpyAsync(device_ptr, host_ptr, nbytes, kind, stream))

    def copy_dtoh_async(self, host_ptr: int, device_ptr: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync(DtoH)",
                  self.rt.cudaMemcpyAsync(host_ptr, device_ptr, nbytes, kind, stream))


def stream_handle(stream: Any) -> int:
    """Integer handle TensorRT's ``execute_async_v3`` expects."""
    return int(stream) if stream is not None else 0


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc)."""

    def __init__(self, runtime: CudaRuntime, nbytes: int) -> None:
        self.runtime = runtime
        self.nbytes = int(nbytes)
        self.ptr = int(runtime.call(f"cudaMalloc({self.nbytes})", runtime.rt.cudaMalloc(self.nbytes)))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.runtime.call("cudaFree", self.runtime.rt.cudaFree(ptr))


class PinnedHostBuffer:
    """Page-locked host memory (cudaMallocHost) viewed as a numpy array.

    Pinned memory makes ``cudaMemcpyAsync`` truly asynchronous and faster than
    a copy from pageable numpy memory (which the driver stages through its own
    pinned buffer).
    """

    def __init__(self, runtime: CudaRuntime, shape: Sequence[int], dtype: Any) -> None:
        self.runtime = runtime
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(v) for v in shape)
        count = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = count * self.dtype.itemsize
        self.ptr = int(runtime.call(f"cudaMallocHost({self.nbytes})",
                                    runtime.rt.cudaMallocHost(self.nbytes)))
        backing = (ctypes.c_ubyte * self.nbytes).from_address(self.ptr)
        self._backing = backing  # keeps the ctypes view alive as long as the array
        self.array = np.frombuffer(backing, dtype=self.dtype, count=count).reshape(self.shape)

    def view(self, leading: int) -> np.ndarray:
        """The first ``leading`` rows (batch items) of the buffer."""
        return self.array[:leading]

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.array = np.empty(0, dtype=self.dtype)
            self._backing = None
            self.runtime.call("cudaFreeHost", self.runtime.rt.cudaFreeHost(ptr))


class IOBinding:
    """One engine I/O tensor: pinned host buffer + device buffer sized for max batch."""

    def __init__(self, runtime: CudaRuntime, name: str, max_shape: Sequence[int], dtype: Any,
                 is_input: bool) -> None:
        self.name = name
        self.is_input = is_input
        self.max_shape = tuple(int(v) for v in max_shape)
        self.host = PinnedHostBuffer(runtime, self.max_shape, dtype)
        self.device: Optional[DeviceBuffer] = None
        try:
            self.device = DeviceBuffer(runtime, self.host.nbytes)
        except BaseException:
            self.host.free()
            raise

    def bytes_for(self, batch: int) -> int:
        per_item = self.host.nbytes // max(self.max_shape[0], 1)
        return per_item * batch

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
        self.host.free()
