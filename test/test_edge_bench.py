"""`fskd bench` end to end on tiny models: JSON, ratios, plot, power and --ros wiring."""

import json
import sys
import types

import pytest

from fskd_ros.cli import main
from fskd_ros.edge import bench
from test_edge_cache import tiny_encoder
from test_edge_tegrastats import ORIN_BUSY


@pytest.fixture()
def models(tmp_path):
    enc = tiny_encoder(tmp_path / "enc.onnx", seed=0, size=16, dim=8)
    base = tiny_encoder(tmp_path / "base.onnx", seed=1, size=16, dim=32)
    return enc, base


def run_bench(tmp_path, *extra):
    out = tmp_path / "bench.json"
    argv = ["bench", *extra, "--batch-sizes", "1,2", "--iterations", "10", "--warmup", "2",
            "--rounds", "2", "--threads", "1", "--tegrastats", "off", "-o", str(out)]
    assert main(argv) == 0
    return json.loads(out.read_text()), out


def test_bench_json_with_baseline_and_int8(tmp_path, models):
    enc, base = models
    result, out = run_bench(tmp_path, str(enc), "--baseline", str(base),
                            "--int8", str(enc), "--baseline-int8", str(base))
    labels = {r["label"] for r in result["results"]}
    assert labels == {f"{role}/onnxruntime/{p}/b{b}" for role in ("encoder", "baseline")
                      for p in ("fp32", "int8") for b in (1, 2)}
    for row in result["results"]:
        assert row["iterations"] == 10
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["throughput_ips"] > 0
        assert 0 < row["cpu_p50_ms"]  # --threads 1: compute cost from thread CPU time
    assert len(result["ratios"]["encoder_vs_baseline"]) == 4
    assert len(result["ratios"]["int8_speedup"]) == 4
    assert all("cpu_speedup" in item for item in result["ratios"]["int8_speedup"])
    assert out.with_suffix(".png").is_file() and result["plot"].endswith(".png")


def test_bench_reports_what_it_skipped(tmp_path, models):
    enc, _ = models
    result, _ = run_bench(tmp_path, str(enc), "--no-baseline")
    assert {r["precision"] for r in result["results"]} == {"fp32"}
    assert any("int8" in s for s in result["skipped"])


def test_bench_power_from_tegrastats(tmp_path, models):
    enc, _ = models
    script = tmp_path / "tegrastats.sh"
    script.write_text("#!/bin/sh\nwhile true; do echo '%s'; sleep 0.05; done\n" % ORIN_BUSY)
    script.chmod(0o755)
    out = tmp_path / "p.json"
    assert main(["bench", str(enc), "--no-baseline", "--precisions", "fp32", "--batch-sizes", "1",
                 "--iterations", "5", "--warmup", "1", "--tegrastats-cmd", str(script),
                 "--idle-seconds", "0.5", "-o", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    # the fake board draws the same power idle and busy: zero dynamic energy
    assert row["busy_power_mw"] == 16321 and row["idle_power_mw"] == 16321
    assert row["dynamic_energy_mj"] == 0.0


def test_bench_ros_uses_latency_probe(tmp_path, models, monkeypatch):
    enc, _ = models
    probe = types.ModuleType("fskd_ros.ros.latency_probe")
    calls = []

    def measure_ros_latency(model_path, backend, frames):
        calls.append((model_path, backend, frames))
        return {"end_to_end_ms_p50": 1.5, "end_to_end_ms_p95": 2.0, "frames": frames}

    probe.measure_ros_latency = measure_ros_latency
    monkeypatch.setitem(sys.modules, "fskd_ros.ros.latency_probe", probe)
    result, _ = run_bench(tmp_path, str(enc), "--no-baseline", "--precisions", "fp32",
                          "--ros", "--ros-frames", "7")
    assert calls == [(str(enc), "onnxruntime", 7)]
    ros = result["ros"]
    assert ros["end_to_end_ms_p50"] == 1.5 and "bare_encoder_p50_ms" in ros
    assert ros["overhead_p50_ms"] == pytest.approx(1.5 - ros["bare_encoder_p50_ms"], abs=1e-3)


def test_bench_ros_without_probe_is_explained(tmp_path, models, monkeypatch):
    enc, _ = models
    monkeypatch.setitem(sys.modules, "fskd_ros.ros.latency_probe", None)
    result, _ = run_bench(tmp_path, str(enc), "--no-baseline", "--precisions", "fp32", "--ros")
    assert "unavailable" in result["ros"]["error"]


def test_ratios_arithmetic():
    rows = [
        {"role": "encoder", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "p50_ms": 2.0},
        {"role": "baseline", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "p50_ms": 20.0},
        {"role": "encoder", "backend": "onnxruntime", "precision": "int8", "batch": 1, "p50_ms": 1.0},
    ]
    r = bench.ratios(rows)
    assert r["encoder_vs_baseline"][0]["encoder_over_baseline"] == 0.1
    assert r["int8_speedup"][0]["speedup"] == 2.0
