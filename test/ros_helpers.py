"""Start the real pipeline as a separate process over real DDS (isolated domain)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent


def ros_env() -> dict:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_shm_localhost.xml"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A child process whose output goes to a log file, stopped with SIGINT."""

    def __init__(self, argv: List[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=ros_env(),
                                     cwd=str(log_path.parent))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def start_inspect(tmp: Path, *args: str) -> Process:
    """fskd-inspect (encoder + classifier in one process), as users start it."""
    return Process([sys.executable, "-m", "fskd_ros.ros.inspect", *args], tmp / "inspect.log")


def start_node(module: str, tmp: Path, *ros_args: str, name: str = "node") -> Process:
    return Process([sys.executable, "-m", module, "--ros-args", *ros_args], tmp / f"{name}.log")


def wait_until(predicate, timeout_s: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval)
