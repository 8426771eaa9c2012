"""End-to-end ROS latency for several encoder thread settings, alternated in one run.

    make build && .venv/bin/python bench/ros_latency_threads.py --threads 0,1 --rounds 2 --frames 150
(run with the Makefile's ROS environment, e.g. through `make bench`-like variables)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import yaml

import fskd_ros.ros.latency_probe as latency_probe
from fskd_ros.ros.description import default_params_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="0,1", help="comma list of intra_op_threads values")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    base = yaml.safe_load(Path(default_params_file()).read_text())
    tmp = Path(tempfile.mkdtemp(prefix="fskd_threads_"))
    files = {}
    for threads in args.threads.split(","):
        base["/**"]["ros__parameters"]["intra_op_threads"] = int(threads)
        files[threads] = tmp / f"threads_{threads}.yaml"
        files[threads].write_text(yaml.safe_dump(base))
    original_popen = subprocess.Popen
    results = []
    for round_index in range(args.rounds):
        for threads, params in files.items():
            def popen(argv, **kwargs):  # add this run's parameters file to fskd-inspect
                return original_popen(list(argv) + [f"params_file:={params}"], **kwargs)
            latency_probe.subprocess.Popen = popen
            try:
                row = latency_probe.measure_ros_latency(frames=args.frames)
            finally:
                latency_probe.subprocess.Popen = original_popen
            row.update(intra_op_threads=int(threads), round=round_index)
            results.append(row)
            print(f"threads={threads} round={round_index}: end-to-end p50 {row['end_to_end_ms_p50']:.1f} ms, "
                  f"node {row['node_inference_ms_p50']:.1f} ms, DDS {row['dds_overhead_ms_p50']:.1f} ms")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
