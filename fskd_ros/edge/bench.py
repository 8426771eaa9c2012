"""``fskd bench``: latency / throughput / energy per backend x precision x batch size.

Measures, in one run and with interleaved rounds (so background load hits every
configuration alike):

* the shipped encoder and, at the same input size, the ResNet12 baseline
  (generated once through ``fskd export resnet12 --untrained`` into the cache
  folder: latency does not depend on the weights), or ``--baseline PATH``;
* ONNX Runtime fp32 and int8 (``--int8 PATH`` or ``--quantize-calib DIR``),
  TensorRT fp16/fp32/int8 with ``--backends onnxruntime,tensorrt``;
* p50/p95/p99/mean latency of one ``encode`` call, per-image latency and
  throughput; ratios encoder/baseline and fp32/int8 from the same run;
* on a Jetson (tegrastats present) mean VDD_IN power idle and busy, and the
  dynamic energy per inference (busy - idle) x latency;
* with ``--ros``, the end-to-end ROS latency (image published -> classification
  received) from ``fskd_ros.ros.latency_probe`` next to the bare encoder latency.

Writes JSON (``--output``) and a plot (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from fskd_ros.core.encoder_file import read_encoder_info, resolve_encoder_path
from fskd_ros.edge import tegrastats

LOG = logging.getLogger("fskd_ros.bench")
PAPER_TENSORRT_MS = 2.6  # paper: MobileViT encoder on Jetson Orin Nano with TensorRT


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fskd_ros" / "bench"


@dataclass
class Config:
    role: str  # "encoder" or "baseline"
    model: Path
    backend: str
    precision: str
    batch: int
    runner: Any = None
    input: Optional[np.ndarray] = None
    times_ms: List[float] = field(default_factory=list)
    cpu_ms: List[float] = field(default_factory=list)  # calling thread's CPU time
    power_mw: List[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.role}/{self.backend}/{self.precision}/b{self.batch}"


# --------------------------------------------------------------------------- models
def ensure_baseline(info, cache_dir: Path, arch: str = "resnet12") -> Path:
    """An untrained ResNet12 encoder at the encoder's input size (exported once, cached)."""
    height, width = (int(v) for v in info.input_size)
    if height != width:
        raise SystemExit("automatic baseline export needs a square input; pass --baseline PATH")
    path = cache_dir / f"{arch}_{height}px_untrained.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fskd_ros.cli", "export", arch, "--untrained",
           "--input-size", str(height), "--output", str(path), "--threads", "1"]
    LOG.info("exporting the %s baseline once: %s", arch, " ".join(cmd))
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        out = getattr(exc, "stdout", "") or ""
        raise SystemExit(
            f"could not export the {arch} baseline (needs torch: pip install -e .[train]); "
            f"pass --baseline PATH.onnx or --no-baseline.\n{out[-2000:]}") from exc
    return path


def ensure_int8(model: Path, calib_dir: Path, cache_dir: Path, calib_images: int,
                threads: int = 0) -> Path:
    from fskd_ros.core.encoder_file import file_sha256
    from fskd_ros.edge.quantize import quantize_encoder

    out = cache_dir / f"{model.stem}.{file_sha256(model)[:12]}.int8-rr.onnx"
    if not out.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        LOG.info("quantising %s -> %s", model.name, out)
        quantize_encoder(model, calib_dir, out, calib_images=calib_images, threads=threads)
    return out


def make_runner(backend: str, model: Path, precision: str, max_batch: int, args) -> Any:
    from fskd_ros.core.backends import create_backend

    if backend == "onnxruntime":
        spinning = None if args.spinning == "default" else args.spinning == "on"
        return create_backend("onnxruntime", model, intra_op_threads=args.threads,
                              spinning=spinning)
    if backend == "tensorrt":
        return create_backend("tensorrt", model, precision=precision, max_batch=max_batch,
                              cache_dir=args.engine_cache, calib_dir=args.trt_calib_dir)
    raise SystemExit(f"unknown backend {backend}")


# --------------------------------------------------------------------------- measuring
def summarise(times_ms: List[float], batch: int) -> Dict[str, float]:
    arr = np.asarray(times_ms, dtype=np.float64)
    mean = float(arr.mean())
    return {
        "iterations": int(arr.size),
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p95_ms": round(float(np.percentile(arr, 95)), 4),
        "p99_ms": round(float(np.percentile(arr, 99)), 4),
        "mean_ms": round(mean, 4),
        "per_image_p50_ms": round(float(np.percentile(arr, 50)) / batch, 4),
        "throughput_ips": round(batch * 1000.0 / mean, 2),
    }


def run_configs(configs: List[Config], iterations: int, warmup: int, rounds: int,
                sampler: Optional[tegrastats.TegrastatsSampler], min_seconds: float) -> None:
    for cfg in configs:
        for _ in range(warmup):
            cfg.runner.encode(cfg.input)
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        for cfg in configs:
            start = time.monotonic()
            done = 0
            while done < per_round or (sampler and time.monotonic() - start < min_seconds):
                c0, t0 = time.thread_time(), time.perf_counter()
                cfg.runner.encode(cfg.input)
                cfg.times_ms.append((time.perf_counter() - t0) * 1e3)
                cfg.cpu_ms.append((time.thread_time() - c0) * 1e3)
                done += 1
            if sampler is not None:
                busy = tegrastats.mean_total_mw(sampler.since(start + 0.2, time.monotonic()))
                if busy is not None:
                    cfg.power_mw.append(busy)


def measure_idle_power(sampler: tegrastats.TegrastatsSampler, seconds: float) -> Optional[float]:
    start = time.monotonic()
    time.sleep(seconds)
    return tegrastats.mean_total_mw(sampler.since(start + 0.2, time.monotonic()))


def ros_latency(model: Path, backend: str, frames: int) -> Dict[str, Any]:
    try:
        from fskd_ros.ros.latency_probe import measure_ros_latency
    except ImportError as exc:
        return {"error": f"ROS latency probe unavailable ({exc}); source your ROS 2 setup and "
                         f"build the package (see README), or drop --ros"}
    try:
        return dict(measure_ros_latency(str(model), backend, frames))
    except Exception as exc:  # report, do not lose the encoder numbers
        return {"error": f"{type(exc).__name__}: {exc}"}


def ros_p50(ros: Dict[str, Any]) -> Optional[float]:
    """End-to-end p50 from the probe's dict (``end_to_end_ms_p50``; ``p50_ms`` accepted)."""
    for key in ("end_to_end_ms_p50", "p50_ms"):
        if key in ros:
            return float(ros[key])
    return None


# --------------------------------------------------------------------------- reporting
def ratios(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    index = {(r["role"], r["backend"], r["precision"], r["batch"]): r for r in rows}
    enc_vs_base, int8_speedup = [], []
    for (role, backend, precision, batch), row in index.items():
        if role == "encoder" and ("baseline", backend, precision, batch) in index:
            base = index[("baseline", backend, precision, batch)]
            enc_vs_base.append({
                "backend": backend, "precision": precision, "batch": batch,
                "encoder_p50_ms": row["p50_ms"], "baseline_p50_ms": base["p50_ms"],
                "encoder_over_baseline": round(row["p50_ms"] / base["p50_ms"], 4),
                "baseline_speedup": round(base["p50_ms"] / row["p50_ms"], 2)})
            if "cpu_p50_ms" in row and "cpu_p50_ms" in base:
                enc_vs_base[-1]["cpu_encoder_over_baseline"] = round(
                    row["cpu_p50_ms"] / base["cpu_p50_ms"], 4)
        if precision == "int8":
            for ref in ("fp32", "fp16"):
                if (role, backend, ref, batch) in index:
                    other = index[(role, backend, ref, batch)]
                    int8_speedup.append({
                        "role": role, "backend": backend, "batch": batch, "reference": ref,
                        "reference_p50_ms": other["p50_ms"], "int8_p50_ms": row["p50_ms"],
                        "speedup": round(other["p50_ms"] / row["p50_ms"], 3)})
                    if "cpu_p50_ms" in row and "cpu_p50_ms" in other:
                        int8_speedup[-1]["cpu_speedup"] = round(
                            other["cpu_p50_ms"] / row["cpu_p50_ms"], 3)
    return {"encoder_vs_baseline": enc_vs_base, "int8_speedup": int8_speedup}


def print_table(result: Dict[str, Any]) -> None:
    print(f"\n{'config':42s} {'p50':>9s} {'p95':>9s} {'p99':>9s} {'img/s':>9s} {'cpu p50':>9s} "
          f"{'mJ/inf':>8s}")
    for r in result["results"]:
        energy = r.get("dynamic_energy_mj")
        cpu = r.get("cpu_p50_ms")
        print(f"{r['label']:42s} {r['p50_ms']:9.3f} {r['p95_ms']:9.3f} {r['p99_ms']:9.3f} "
              f"{r['throughput_ips']:9.1f} {cpu if cpu is not None else '-':>9} "
              f"{energy if energy is not None else '-':>8}")
    for item in result["ratios"]["encoder_vs_baseline"]:
        cpu = item.get("cpu_encoder_over_baseline")
        print(f"encoder/baseline {item['backend']} {item['precision']} b{item['batch']}: "
              f"{item['encoder_over_baseline']:.3f} ({item['baseline_speedup']}x faster)"
              + (f"; CPU time {cpu:.3f}" if cpu is not None else ""))
    for item in result["ratios"]["int8_speedup"]:
        cpu = item.get("cpu_speedup")
        print(f"int8 speed-up {item['role']} {item['backend']} b{item['batch']} vs "
              f"{item['reference']}: {item['speedup']:.2f}x"
              + (f" (CPU time {cpu:.2f}x)" if cpu is not None else ""))
    if "ros" in result:
        print("ROS end-to-end:", json.dumps(result["ros"]))


def plot(result: Dict[str, Any], path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib not installed: no plot (pip install matplotlib)")
        return None
    rows = result["results"]
    labels = [r["label"] for r in rows]
    p50 = [r["per_image_p50_ms"] for r in rows]
    p95 = [r["p95_ms"] / r["batch"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 3), 4.5))
    xs = np.arange(len(rows))
    colors = ["tab:blue" if r["role"] == "encoder" else "tab:gray" for r in rows]
    ax.bar(xs, p50, color=colors, label="p50 per image")
    ax.scatter(xs, p95, color="black", marker="_", s=200, label="p95 per image", zorder=3)
    ros = result.get("ros") or {}
    if ros_p50(ros) is not None:
        ax.axhline(ros_p50(ros), color="tab:red", linestyle="--",
                   label=f"ROS end-to-end p50 ({ros.get('backend', '')})")
    ax.axhline(PAPER_TENSORRT_MS, color="tab:green", linestyle=":",
               label=f"paper: {PAPER_TENSORRT_MS} ms (Orin Nano, TensorRT)")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("ms per image (log)")
    ax.set_yscale("log")
    ax.set_title(f"fskd bench on {result['machine']['host']} ({result['machine']['cpu']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_info() -> Dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = ""
    try:
        model = Path("/proc/device-tree/model").read_text().strip("\0\n ")
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "board": model,
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="default",
                        help="ONNX encoder ('default' = the shipped encoder)")
    parser.add_argument("--baseline", default=None,
                        help="baseline ONNX at the same input size (default: export an untrained "
                             "ResNet12 once into --cache-dir)")
    parser.add_argument("--baseline-arch", default="resnet12")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--backends", default="onnxruntime", help="comma list: onnxruntime,tensorrt")
    parser.add_argument("--precisions", default="fp32,int8",
                        help="onnxruntime: fp32,int8; tensorrt: fp16,fp32,int8")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iterations", type=int, default=100, help="timed calls per config")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    parser.add_argument("--spinning", choices=("default", "on", "off"), default="default")
    parser.add_argument("--int8", default=None, help="int8 ONNX of the encoder (fskd quantize)")
    parser.add_argument("--baseline-int8", default=None, help="int8 ONNX of the baseline")
    parser.add_argument("--quantize-calib", default=None,
                        help="image folder: quantise encoder and baseline into --cache-dir if "
                             "no --int8 is given")
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--cache-dir", default=None, help="baseline/int8 cache (default ~/.cache/fskd_ros/bench)")
    parser.add_argument("--engine-cache", default=None, help="TensorRT engine cache folder")
    parser.add_argument("--trt-calib-dir", default=None, help="images for TensorRT int8 calibration")
    parser.add_argument("--tegrastats", choices=("auto", "on", "off"), default="auto",
                        help="power from tegrastats (auto: when the tool exists)")
    parser.add_argument("--tegrastats-cmd", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--ros", action="store_true", help="also measure end-to-end ROS latency")
    parser.add_argument("--ros-frames", type=int, default=200)
    parser.add_argument("--ros-backend", default=None, help="backend for --ros (default: first)")
    parser.add_argument("--output", "-o", default="bench_results.json")
    parser.add_argument("--plot", default=None, help="PNG path (default: next to --output)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = resolve_encoder_path(args.model)
    info = read_encoder_info(model)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    backends = [b for b in args.backends.split(",") if b]
    precisions = [p for p in args.precisions.split(",") if p]
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
    height, width = (int(v) for v in info.input_size)

    models: Dict[str, Path] = {"encoder": model}
    if not args.no_baseline:
        models["baseline"] = (Path(args.baseline) if args.baseline
                              else ensure_baseline(info, cache_dir, args.baseline_arch))
        base_info = read_encoder_info(models["baseline"])
        if list(base_info.input_size) != list(info.input_size):
            raise SystemExit(f"baseline input {base_info.input_size} != encoder {info.input_size}: "
                             "compare at the same input size")
    int8_models: Dict[str, Optional[Path]] = {
        "encoder": Path(args.int8) if args.int8 else None,
        "baseline": Path(args.baseline_int8) if args.baseline_int8 else None}
    if "onnxruntime" in backends and "int8" in precisions and args.quantize_calib:
        for role in models:
            if int8_models.get(role) is None:
                int8_models[role] = ensure_int8(models[role], Path(args.quantize_calib), cache_dir,
                                                args.calib_images, args.threads)

    configs: List[Config] = []
    skipped: List[str] = []
    rng = np.random.default_rng(0)
    for role, path in models.items():
        for backend in backends:
            for precision in precisions:
                if backend == "onnxruntime":
                    if precision == "fp16":
                        continue
                    source = path if precision == "fp32" else int8_models.get(role)
                    if source is None:
                        skipped.append(f"{role}/{backend}/{precision}: no int8 model "
                                       "(--int8/--quantize-calib)")
                        continue
                else:
                    source = path
                try:
                    runner = make_runner(backend, source, precision, max(batches), args)
                except Exception as exc:
                    skipped.append(f"{role}/{backend}/{precision}: {exc}")
                    LOG.warning("skipping %s/%s/%s: %s", role, backend, precision, exc)
                    continue
                for batch in batches:
                    x = rng.normal(size=(batch, 3, height, width)).astype(np.float32)
                    configs.append(Config(role, source, backend, precision, batch, runner, x))
    if not configs:
        print("nothing to benchmark:\n  " + "\n  ".join(skipped))
        return 1

    use_power = args.tegrastats == "on" or (args.tegrastats == "auto" and
                                            (tegrastats.tegrastats_available() or args.tegrastats_cmd))
    idle_mw = None
    result: Dict[str, Any] = {"machine": machine_info(), "encoder": str(model),
                              "encoder_info": {"arch": info.arch, "input_size": info.input_size,
                                               "trained": info.trained,
                                               "description": info.description},
                              "models": {k: str(v) for k, v in models.items()},
                              "int8_models": {k: str(v) for k, v in int8_models.items() if v},
                              "settings": {"iterations": args.iterations, "warmup": args.warmup,
                                           "rounds": args.rounds, "threads": args.threads,
                                           "spinning": args.spinning},
                              "skipped": skipped, "paper_tensorrt_ms": PAPER_TENSORRT_MS}
    start = time.monotonic()
    if use_power:
        cmd = args.tegrastats_cmd.split() if args.tegrastats_cmd else None
        with tegrastats.TegrastatsSampler(interval_ms=100, command=cmd) as sampler:
            sampler.wait_for_samples(2)
            idle_mw = measure_idle_power(sampler, args.idle_seconds)
            run_configs(configs, args.iterations, args.warmup, 1, sampler, min_seconds=3.0)
    else:
        run_configs(configs, args.iterations, args.warmup, max(1, args.rounds), None, 0.0)
    result["bench_seconds"] = round(time.monotonic() - start, 1)

    rows = []
    for cfg in configs:
        row: Dict[str, Any] = {"label": cfg.label, "role": cfg.role, "model": str(cfg.model),
                               "backend": cfg.backend, "precision": cfg.precision,
                               "batch": cfg.batch, "describe": cfg.runner.describe()}
        row.update(summarise(cfg.times_ms, cfg.batch))
        if cfg.backend == "onnxruntime" and args.threads == 1:
            # With one intra-op thread ORT computes on the calling thread, so its CPU
            # time is the inference's compute cost, unaffected by other processes
            # taking the core (wall time on a shared machine is not).
            row["cpu_p50_ms"] = round(float(np.percentile(cfg.cpu_ms, 50)), 4)
        if cfg.power_mw:
            busy = float(np.mean(cfg.power_mw))
            row["busy_power_mw"] = round(busy, 1)
            if idle_mw is not None:
                row["idle_power_mw"] = round(idle_mw, 1)
                row["dynamic_energy_mj"] = round(
                    tegrastats.dynamic_energy_mj(busy, idle_mw, row["per_image_p50_ms"]), 4)
        rows.append(row)
    result["results"] = rows
    result["ratios"] = ratios(rows)
    if idle_mw is not None:
        result["idle_power_mw"] = round(idle_mw, 1)

    if args.ros:
        backend = args.ros_backend or backends[0]
        ros = ros_latency(model, backend, args.ros_frames)
        ros.setdefault("backend", backend)
        bare = next((r for r in rows if r["role"] == "encoder" and r["backend"] == backend
                     and r["batch"] == 1), None)
        if bare is not None:
            ros["bare_encoder_p50_ms"] = bare["p50_ms"]
            e2e = ros_p50(ros)
            if e2e is not None:
                ros["overhead_p50_ms"] = round(e2e - bare["p50_ms"], 3)
        result["ros"] = ros

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = Path(args.plot) if args.plot else out.with_suffix(".png")
    if plot(result, plot_path) is not None:
        result["plot"] = str(plot_path)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for cfg in {id(c.runner): c.runner for c in configs}.values():
        cfg.close()
    print_table(result)
    for line in skipped:
        print("skipped:", line)
    print(f"\nwrote {out}" + (f" and {plot_path}" if "plot" in result else ""))
    return 0
