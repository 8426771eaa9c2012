"""Engine-cache key and staleness logic, on a real small ONNX encoder file (no TensorRT)."""

import json
import logging
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fskd_ros.core.backends.engine_cache import (
    EngineCache,
    EngineCacheError,
    EngineKey,
    calibration_fingerprint,
    default_cache_dir,
)
from fskd_ros.core.encoder_file import EncoderInfo, read_encoder_info, write_encoder_info
from fskd_ros.core.backends.tensorrt_backend import make_engine_key

ENV = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


def tiny_encoder(path, seed=0, size=32, dim=8):
    """Conv -> ReLU -> GlobalAveragePool -> Flatten: a real fskd encoder file."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(dim, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    write_encoder_info(model, EncoderInfo(arch="tiny", input_size=[size, size], mean=[0.5] * 3,
                                          std=[0.25] * 3, embedding_dim=dim, trained=False))
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def model(tmp_path):
    return tiny_encoder(tmp_path / "tiny.onnx")


def key_for(path, **overrides):
    info = read_encoder_info(path)
    env = dict(ENV, **{k: v for k, v in overrides.items() if k in ENV})
    key = make_engine_key(path, info, overrides.get("precision", "fp16"),
                          overrides.get("max_batch", 4), env)
    return key


def test_key_covers_everything_the_engine_depends_on(model, tmp_path):
    base = key_for(model)
    assert base.input_shape == (3, 32, 32) and base.max_batch == 4
    assert len(base.onnx_sha256) == 64
    variants = [
        key_for(model, tensorrt_version="10.7.0"),
        key_for(model, gpu_name="NVIDIA GeForce RTX 4090"),
        key_for(model, compute_capability="8.9"),
        key_for(model, precision="fp32"),
        key_for(model, max_batch=8),
        key_for(tiny_encoder(tmp_path / "other.onnx", seed=1)),
    ]
    digests = {base.digest()} | {v.digest() for v in variants}
    assert len(digests) == 1 + len(variants)
    assert key_for(model).digest() == base.digest()  # deterministic
    assert EngineKey.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_key_rejects_bad_values():
    with pytest.raises(ValueError):
        EngineKey("x", "10", "g", "8.7", "int4", (3, 8, 8))
    with pytest.raises(ValueError):
        EngineKey("x", "10", "g", "8.7", "fp16", (3, 8, 8), min_batch=1, opt_batch=9, max_batch=8)


def test_default_folder_is_persistent(monkeypatch, tmp_path):
    monkeypatch.setenv("FSKD_ENGINE_CACHE", str(tmp_path / "engines"))
    assert default_cache_dir() == tmp_path / "engines"
    monkeypatch.delenv("FSKD_ENGINE_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == \
        __import__("pathlib").Path.home() / ".cache" / "fskd_ros" / "engines"


def test_build_then_hit(model, tmp_path, caplog):
    cache = EngineCache(tmp_path / "cache")
    key = key_for(model)
    builds = []

    def build():
        builds.append(1)
        return b"ENGINE-" + key.digest().encode()

    with caplog.at_level(logging.INFO, logger="fskd_ros.engine_cache"):
        data, path, built = cache.get_or_build(model.name, key, build)
    assert built and builds == [1] and path.is_file()
    assert "built in" in caplog.text
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["key"]["onnx_sha256"] == key.onnx_sha256
    assert sidecar["engine_bytes"] == len(data)
    data2, _, built2 = cache.get_or_build(model.name, key, build)
    assert data2 == data and not built2 and builds == [1]
    # no temp files left behind by the atomic writes
    assert sorted(p.suffix for p in path.parent.iterdir()) == [".engine", ".json"]


@pytest.mark.parametrize("change", ["tensorrt", "gpu", "onnx"])
def test_stale_engine_is_rebuilt_or_refused(model, tmp_path, change):
    cache = EngineCache(tmp_path / "cache")
    old = key_for(model)
    cache.store(model.name, old, b"old engine")
    if change == "tensorrt":       # JetPack upgrade
        new = key_for(model, tensorrt_version="10.7.0")
    elif change == "gpu":          # cache folder copied from another board
        new = key_for(model, gpu_name="Xavier", compute_capability="7.2")
    else:                          # model re-exported under the same name
        tiny_encoder(model, seed=5)
        new = key_for(model)
    status = cache.check(model.name, new)
    assert status.state == "stale" and "key mismatch" in status.reason
    with pytest.raises(EngineCacheError) as err:
        cache.get_or_build(model.name, new, lambda: b"never", allow_build=False)
    assert "stale" in str(err.value) and "fskd build-engine" in str(err.value)
    data, _, built = cache.get_or_build(model.name, new, lambda: b"new engine")
    assert built and data == b"new engine"
    assert cache.check(model.name, new).valid


def test_damaged_files_are_never_loaded(model, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    key = key_for(model)
    engine_path = cache.store(model.name, key, b"x" * 1000)
    sidecar_path = engine_path.with_suffix(".json")

    # truncated engine (e.g. copy interrupted)
    engine_path.write_bytes(b"x" * 500)
    assert "truncated" in cache.check(model.name, key).reason
    with pytest.raises(EngineCacheError):
        cache.load(model.name, key)
    # same size, different bytes
    engine_path.write_bytes(b"y" * 1000)
    assert "hash" in cache.check(model.name, key).reason
    # corrupt sidecar
    cache.store(model.name, key, b"x" * 1000)
    sidecar_path.write_text("{not json")
    assert "corrupt sidecar" in cache.check(model.name, key).reason
    # engine with no sidecar (unknown origin)
    os.remove(sidecar_path)
    assert cache.check(model.name, key).state == "stale"
    with pytest.raises(EngineCacheError):
        cache.get_or_build(model.name, key, lambda: b"z", allow_build=False)
    # missing entirely
    os.remove(engine_path)
    assert cache.check(model.name, key).state == "missing"


def test_calibration_set_is_part_of_the_int8_key(model, tmp_path):
    imgs = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        p.write_bytes(b"\x89PNG" + bytes([i]))
        imgs.append(p)
    info = read_encoder_info(model)
    a = make_engine_key(model, info, "int8", 4, ENV, calibration_files=imgs)
    b = make_engine_key(model, info, "int8", 4, ENV, calibration_files=imgs[:2])
    assert a.calibration_sha256 == calibration_fingerprint(imgs)
    assert a.digest() != b.digest()
