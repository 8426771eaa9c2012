"""``make demo``: the inspection pipeline on real images, end to end over DDS.

1. starts ``fskd-inspect`` (encoder + classifier) and waits for its services;
2. enrolls a few shots per class through the ``enroll`` service, from this
   separate process, as a user's node would;
3. starts the ``replay`` node, which streams the held-out images as a camera;
4. collects ``classification`` messages and writes a summary: accuracy,
   latency p50/p95 (encoder+classifier, and camera-to-result), frames per second.

Default data: the ELPV solar-cell electroluminescence set from PyPI
(``elpv-dataset``, CC BY-NC-SA 4.0; Deitsch et al.), classes "functional"
(defect probability 0) and "defective" (probability 1). ``--data DIR`` uses any
folder-per-class image set instead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from fskd_ros.core.encoder_file import read_encoder_info, resolve_encoder_path
from fskd_ros.core.preprocessing import load_image_file
from fskd_ros.ros.description import fastdds_profile
from fskd_ros.ros.processes import child_env, stop
from fskd_ros.ros.replay_node import IMAGE_SUFFIXES

CAMERA = "/demo/camera/image_raw"


def elpv_classes() -> Dict[str, List[Path]]:
    """ELPV cells by label, from the files the elpv-dataset wheel installs."""
    import elpv_dataset

    root = Path(elpv_dataset.__file__).parent / "data"
    classes: Dict[str, List[Path]] = {"functional": [], "defective": []}
    for line in (root / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        probability = float(parts[1])
        if probability == 0.0:
            classes["functional"].append(root / parts[0])
        elif probability == 1.0:
            classes["defective"].append(root / parts[0])
    return classes


def folder_classes(root: Path) -> Dict[str, List[Path]]:
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
               for d in sorted(root.iterdir()) if d.is_dir()}
    return {name: files for name, files in classes.items() if files}


def split(classes: Dict[str, List[Path]], shots: int, per_class: int,
          seed: int) -> Tuple[Dict[str, List[Path]], List[Tuple[Path, str]]]:
    rng = random.Random(seed)
    support, stream = {}, []
    for label, files in classes.items():
        files = list(files)
        rng.shuffle(files)
        if len(files) <= shots:
            raise SystemExit(f"class '{label}' has {len(files)} images; need more than {shots}")
        support[label] = files[:shots]
        stream += [(path, label) for path in files[shots:shots + per_class]]
    rng.shuffle(stream)
    return support, stream


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_demo(args: argparse.Namespace) -> dict:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile())
    from std_msgs.msg import String

    from fskd_ros.ros import qos
    from fskd_ros.ros.client import PipelineClient
    from fskd_ros.ros.image_conversion import rgb_to_image

    out_dir = Path(args.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = folder_classes(Path(args.data)) if args.data else elpv_classes()
    data_name = args.data or "ELPV solar cells (PyPI elpv-dataset, CC BY-NC-SA 4.0)"
    support, stream = split(classes, args.shots, args.frames_per_class, args.seed)
    stream_list = out_dir / "stream.txt"
    stream_list.write_text("".join(f"{path}\n" for path, _ in stream))
    truth = {str(path): label for path, label in stream}
    info = read_encoder_info(resolve_encoder_path(args.model))
    print(f"encoder: {info.encoder_id} ({info.description or info.arch})")
    if not info.trained:
        print("WARNING: the encoder has random weights; the accuracy below is meaningless.")
    print(f"data: {data_name}: {len(classes)} classes, {args.shots} shots each, "
          f"{len(stream)} frames streamed at {args.rate} Hz")

    gallery = out_dir / "gallery.npz"
    if gallery.exists():
        gallery.unlink()  # the demo starts from an empty gallery every time
    logs = {name: open(out_dir / f"{name}.log", "wb") for name in ("inspect", "replay")}
    inspect = subprocess.Popen(
        [sys.executable, "-m", "fskd_ros.ros.inspect", f"camera_topic:={CAMERA}",
         f"gallery_path:={gallery}", f"model:={args.model}"],
        stdout=logs["inspect"], stderr=subprocess.STDOUT, env=child_env())
    client = PipelineClient(name="fskd_demo")
    replay = None
    results: Dict[str, dict] = {}
    sources: Dict[Tuple[int, int], str] = {}
    lock = threading.Lock()

    def on_source(msg: String) -> None:
        item = json.loads(msg.data)
        with lock:
            sources[(item["sec"], item["nanosec"])] = item["path"]

    def on_result(msg) -> None:
        received = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with lock:
            results[f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"] = {
                "key": (msg.header.stamp.sec, msg.header.stamp.nanosec), "label": msg.label,
                "score": msg.score, "unknown": msg.unknown, "inference_ms": msg.inference_ms,
                "end_to_end_ms": (received - stamp) * 1e3, "received": received}

    try:
        client.wait_for_services(60.0)
        started = time.perf_counter()
        for label, files in support.items():
            images = [rgb_to_image(load_image_file(str(p))) for p in files]
            reply = client.call("enroll", label=label, images=images)
            if not reply.success:
                raise SystemExit(f"enroll '{label}' failed: {reply.message}")
            print(f"  enrolled {label}: {reply.shots} shots (gallery v{reply.gallery_version})")
        enroll_s = time.perf_counter() - started
        client.node.create_subscription(String, "/demo/replay/source", on_source, qos.LATCHED)
        client.subscribe_classifications(on_result)
        replay = subprocess.Popen(
            [sys.executable, "-m", "fskd_ros.ros.replay_node", "--ros-args", "-r", "__ns:=/demo",
             "-r", f"image:={CAMERA}", "-p", f"path:={stream_list}", "-p", f"rate_hz:={args.rate}",
             "-p", "start_delay_s:=0.5", "-p", "wait_for_subscribers:=1"],
            stdout=logs["replay"], stderr=subprocess.STDOUT, env=child_env())
        deadline = time.monotonic() + 60 + len(stream) / args.rate * 3
        all_published_at = None
        while time.monotonic() < deadline:
            with lock:
                matched = sum(1 for r in results.values() if r["key"] in sources)
                published = len(sources)
            if published == len(stream):
                all_published_at = all_published_at or time.monotonic()
                # Stop when every frame has a result, or 3 s after the last one (dropped frames).
                if matched == published or time.monotonic() - all_published_at > 3.0:
                    break
            if inspect.poll() is not None:
                raise SystemExit("fskd-inspect stopped; see " + str(out_dir / "inspect.log"))
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        client.close()
        if replay is not None:
            stop(replay)
        stop(inspect)
        for handle in logs.values():
            handle.close()

    with lock:
        rows = [dict(r, path=sources[r["key"]], truth=truth.get(sources[r["key"]]))
                for r in results.values() if r["key"] in sources]
    correct = sum(r["label"] == r["truth"] for r in rows)
    duration = (max(r["received"] for r in rows) - min(r["received"] for r in rows)) if len(rows) > 1 else 0
    per_class = {label: {"frames": sum(r["truth"] == label for r in rows),
                         "correct": sum(r["truth"] == label and r["label"] == label for r in rows)}
                 for label in support}
    summary = {
        "encoder_id": info.encoder_id, "encoder_trained": info.trained, "data": data_name,
        "classes": list(support), "shots_per_class": args.shots,
        "frames_streamed": len(stream), "frames_published": len(sources), "frames_classified": len(rows),
        "accuracy": correct / len(rows) if rows else 0.0, "per_class": per_class,
        "unknown_rate": sum(r["unknown"] for r in rows) / len(rows) if rows else 0.0,
        "inference_ms": {"p50": percentile([r["inference_ms"] for r in rows], 50),
                         "p95": percentile([r["inference_ms"] for r in rows], 95)},
        "end_to_end_ms": {"p50": percentile([r["end_to_end_ms"] for r in rows], 50),
                          "p95": percentile([r["end_to_end_ms"] for r in rows], 95)},
        "fps": (len(rows) - 1) / duration if duration > 0 else 0.0,
        "replay_rate_hz": args.rate, "enroll_seconds": enroll_s,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_summary(summary: dict, path: Path) -> None:
    print()
    print("fskd_ros inspection demo")
    print(f"  frames classified     {summary['frames_classified']}/{summary['frames_streamed']}")
    print(f"  accuracy              {summary['accuracy']:.1%}"
          + ("   (untrained encoder: meaningless)" if not summary["encoder_trained"] else ""))
    for label, row in summary["per_class"].items():
        print(f"    {label:<20}{row['correct']}/{row['frames']}")
    print(f"  unknown (open-set)    {summary['unknown_rate']:.1%}")
    print(f"  encoder+classifier    p50 {summary['inference_ms']['p50']:.1f} ms   "
          f"p95 {summary['inference_ms']['p95']:.1f} ms")
    print(f"  camera -> result      p50 {summary['end_to_end_ms']['p50']:.1f} ms   "
          f"p95 {summary['end_to_end_ms']['p95']:.1f} ms")
    print(f"  throughput            {summary['fps']:.1f} fps (replay at {summary['replay_rate_hz']} Hz)")
    print(f"  summary               {path}")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fskd-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder-per-class images (default: ELPV solar cells)")
    parser.add_argument("--shots", type=int, default=5, help="shots enrolled per class")
    parser.add_argument("--frames-per-class", type=int, default=60, help="held-out frames streamed per class")
    parser.add_argument("--rate", type=float, default=15.0, help="replay rate, Hz")
    parser.add_argument("--model", default="default", help="encoder file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="demo_output", help="folder for logs and summary.json")
    args = parser.parse_args(argv)
    summary = run_demo(args)
    print_summary(summary, Path(args.output).resolve() / "summary.json")
    return 0 if summary["frames_classified"] else 1


if __name__ == "__main__":
    sys.exit(main())
