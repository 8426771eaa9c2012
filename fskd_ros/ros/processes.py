"""Child ROS processes for the demo and the latency probe."""

from __future__ import annotations

import os
import signal
import subprocess

from fskd_ros.ros.description import fastdds_profile


def child_env() -> dict:
    """Environment for a child: local-only discovery and the shared-memory profile unless set."""
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Ctrl-C (the nodes save their state on it), then kill if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
