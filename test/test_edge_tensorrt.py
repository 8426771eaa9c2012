"""TensorRT backend: clear errors without TensorRT / cuda-python / GPU, and the
buffer + name-based-I/O wiring exercised against fakes.

The fakes stand in for `tensorrt` and cuda-python's runtime: "device" memory is
host memory and the fake engine runs the ONNX model with onnxruntime. They check
our code (buffer sizes, pointers, shapes, copies, batching, caching), not
TensorRT itself; the real-GPU test at the bottom skips without TensorRT + GPU.
"""

import ctypes
import enum
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from fskd_ros.core.backends import BackendError, create_backend
from fskd_ros.core.backends import cuda_buffers
from fskd_ros.core.backends import tensorrt_backend as trt_backend
from fskd_ros.core.backends.cuda_buffers import CudaRuntime, PinnedHostBuffer, import_cudart
from test_edge_cache import tiny_encoder


def _have(module):
    try:
        __import__(module)
        return True
    except Exception:
        return False


def _gpu_visible():
    try:
        CudaRuntime().device_properties(0)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- fakes
class FakeCudart(types.ModuleType):
    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class Stream:
        def __init__(self, value):
            self.value = value

        def __int__(self):
            return self.value

    def __init__(self, devices=1):
        super().__init__("cuda.bindings.runtime")
        self.devices = devices
        self.device_mem, self.host_mem = {}, {}
        self.copies = []
        self.streams = 0

    def _ok(self, *values):
        return (self.cudaError_t.cudaSuccess, *values)

    def cudaGetDeviceCount(self):
        if not self.devices:
            return (self.cudaError_t.cudaErrorNoDevice, 0)
        return self._ok(self.devices)

    def cudaGetDeviceProperties(self, device):
        return self._ok(SimpleNamespace(name=b"Orin (fake)\0\0\0", major=8, minor=7))

    def cudaSetDevice(self, device):
        return self._ok()

    def cudaGetErrorName(self, status):
        return self._ok(self.cudaError_t(int(status)).name.encode())

    def cudaGetErrorString(self, status):
        return self._ok(b"fake error text")

    def _alloc(self, table, nbytes):
        buf = ctypes.create_string_buffer(max(int(nbytes), 1))
        table[ctypes.addressof(buf)] = buf
        return self._ok(ctypes.addressof(buf))

    def cudaMalloc(self, nbytes):
        return self._alloc(self.device_mem, nbytes)

    def cudaMallocHost(self, nbytes):
        return self._alloc(self.host_mem, nbytes)

    def cudaFree(self, ptr):
        del self.device_mem[ptr]
        return self._ok()

    def cudaFreeHost(self, ptr):
        del self.host_mem[ptr]
        return self._ok()

    def cudaStreamCreate(self):
        self.streams += 1
        return self._ok(self.Stream(0x5000 + self.streams))

    def cudaStreamDestroy(self, stream):
        self.streams -= 1
        return self._ok()

    def cudaStreamSynchronize(self, stream):
        return self._ok()

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        table = self.device_mem if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else self.host_mem
        assert dst in table, "copy destination was not allocated by the right cudaMalloc*"
        assert nbytes <= ctypes.sizeof(table[dst])
        ctypes.memmove(dst, src, nbytes)
        self.copies.append((kind.name, nbytes))
        return self._ok()


def fake_tensorrt(version="10.3.0"):
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.shape = engine, {}, None

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = int(ptr)
            return True

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return 1 <= shape[0] <= self.engine.max_batch

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int) and stream_handle
            count = int(np.prod(self.shape))
            src = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses["images"]))
            out = self.engine.session.run(None, {"images": src.reshape(self.shape)})[0]
            out = np.ascontiguousarray(out, dtype=np.float32)
            ctypes.memmove(self.addresses["embedding"], out.ctypes.data, out.nbytes)
            return True

    class Engine:
        def __init__(self, data):
            path, max_batch = data.decode().split("|")[1:]
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.max_batch = int(max_batch)
            shape = self.session.get_inputs()[0].shape
            self.size = int(shape[2])
            self.dim = int(self.session.get_outputs()[0].shape[1])
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "embedding"][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name, profile):
            full = (3, self.size, self.size)
            return [(1, *full), (1, *full), (self.max_batch, *full)]

        def get_tensor_shape(self, name):
            return (-1, 3, self.size, self.size) if name == "images" else (-1, self.dim)

        def get_tensor_dtype(self, name):
            return np.float32

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(data) if data.startswith(b"FAKE|") else None

    trt.ILogger = ILogger
    trt.Logger = ILogger
    trt.TensorIOMode = TensorIOMode
    trt.Runtime = Runtime
    trt.nptype = np.dtype
    return trt


@pytest.fixture()
def model(tmp_path):
    return tiny_encoder(tmp_path / "tiny.onnx", size=16, dim=8)


def install_fakes(monkeypatch, trt=None, cudart=None):
    if cudart is not None:
        cuda_pkg = types.ModuleType("cuda")
        bindings_pkg = types.ModuleType("cuda.bindings")
        bindings_pkg.runtime = cudart
        cuda_pkg.bindings = bindings_pkg
        modules = {"cuda": cuda_pkg, "cuda.bindings": bindings_pkg, "cuda.bindings.runtime": cudart}
    else:  # None in sys.modules makes the import fail as if not installed
        modules = dict.fromkeys(["cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"])
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


# --------------------------------------------------------------------------- clear errors
@pytest.mark.skipif(_have("tensorrt"), reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install(model):
    with pytest.raises(BackendError) as err:
        create_backend("tensorrt", model)
    text = str(err.value)
    assert "python3-libnvinfer" in text and "not pip" in text
    assert "backend:=onnxruntime" in text


def test_missing_cuda_python_names_the_version(monkeypatch):
    install_fakes(monkeypatch, trt=fake_tensorrt(), cudart=None)
    with pytest.raises(BackendError) as err:
        import_cudart()
    assert "cuda-python" in str(err.value) and "cuda-python>=12,<13" in str(err.value)
    with pytest.raises(BackendError) as err:
        trt_backend.check_environment()
    assert "cuda-python:" in str(err.value) and "TensorRT:" not in str(err.value)


def test_old_tensorrt_is_refused(monkeypatch):
    install_fakes(monkeypatch, trt=fake_tensorrt("8.6.1"), cudart=FakeCudart())
    with pytest.raises(BackendError) as err:
        trt_backend.import_tensorrt()
    assert "TensorRT 8.6.1" in str(err.value) and ">= 10" in str(err.value)


def test_no_gpu_is_a_clear_error(monkeypatch):
    install_fakes(monkeypatch, trt=fake_tensorrt(), cudart=FakeCudart(devices=0))
    with pytest.raises(BackendError) as err:
        trt_backend.check_environment()
    assert "GPU:" in str(err.value) and "cudaErrorNoDevice" in str(err.value)


@pytest.mark.skipif(not _have("cuda.bindings.runtime") and not _have("cuda.cudart"),
                    reason="cuda-python not installed here")
@pytest.mark.skipif(_gpu_visible(), reason="a GPU is visible here")
def test_real_cuda_python_without_gpu_is_a_clear_error():
    with pytest.raises(BackendError) as err:
        CudaRuntime().device_properties(0)
    assert "no usable CUDA GPU" in str(err.value) or "no CUDA GPU" in str(err.value)


# --------------------------------------------------------------------------- wiring (fakes)
def test_pinned_buffer_is_a_numpy_view_of_the_allocation():
    rt = FakeCudart()
    buf = PinnedHostBuffer(CudaRuntime(rt), (4, 3), np.float32)
    buf.array[:] = 7.0
    raw = np.ctypeslib.as_array((ctypes.c_float * 12).from_address(buf.ptr))
    assert buf.nbytes == 48 and raw.sum() == 84.0
    buf.free()
    assert not rt.host_mem


def test_backend_encodes_through_buffers_and_matches_onnxruntime(monkeypatch, model, tmp_path):
    rt = FakeCudart()
    install_fakes(monkeypatch, trt=fake_tensorrt(), cudart=rt)
    builds = []

    def fake_build(path, info, precision, max_batch, *args, **kwargs):
        builds.append(precision)
        return f"FAKE|{path}|{max_batch}".encode()

    monkeypatch.setattr(trt_backend, "build_serialized_engine", fake_build)
    backend = create_backend("tensorrt", model, max_batch=4, cache_dir=tmp_path / "engines")
    assert backend.built_now and builds == ["fp16"]
    assert "Orin (fake)" in backend.describe() and "sm8.7" in backend.describe()

    reference = create_backend("onnxruntime", model)
    batch = np.random.default_rng(0).normal(size=(10, 3, 16, 16)).astype(np.float32)
    got = backend.encode(batch)  # 10 > max_batch 4: split into 4 + 4 + 2
    np.testing.assert_allclose(got, reference.encode(batch), rtol=1e-5, atol=1e-5)
    one = backend.encode(batch[:1])
    np.testing.assert_allclose(one, got[:1], rtol=1e-6)
    one[:] = 0  # result must not alias the reused pinned buffer
    assert np.abs(backend.encode(batch[:1])).sum() > 0
    # input copies are sized for the actual batch, not max_batch
    htod = [n for kind, n in rt.copies if kind == "cudaMemcpyHostToDevice"]
    assert htod[-1] == 1 * 3 * 16 * 16 * 4
    with pytest.raises(BackendError):
        backend.encode(np.zeros((1, 3, 8, 8), np.float32))
    backend.close()
    assert not rt.device_mem and not rt.host_mem and rt.streams == 0

    # second start: cache hit, no build; with building disabled too
    again = create_backend("tensorrt", model, max_batch=4, cache_dir=tmp_path / "engines",
                           allow_build=False)
    assert not again.built_now and builds == ["fp16"]
    again.close()
    # different precision is a different slot: refused when building is disabled
    with pytest.raises(BackendError) as err:
        create_backend("tensorrt", model, precision="fp32", max_batch=4,
                       cache_dir=tmp_path / "engines", allow_build=False)
    assert "fskd build-engine" in str(err.value)


# --------------------------------------------------------------------------- real GPU
@pytest.mark.skipif(not _have("tensorrt"), reason="needs TensorRT (run on a Jetson / CUDA box)")
@pytest.mark.skipif(not _gpu_visible(), reason="needs an NVIDIA GPU")
def test_real_tensorrt_engine_matches_onnxruntime(model, tmp_path):  # pragma: no cover
    backend = create_backend("tensorrt", model, precision="fp32", max_batch=4,
                             cache_dir=tmp_path / "engines")
    reference = create_backend("onnxruntime", model)
    batch = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(backend.encode(batch), reference.encode(batch), rtol=1e-3, atol=1e-3)
    backend.close()
