"""tegrastats parsing and sampling (Jetson board power for `fskd bench`).

Orin lines (JetPack 5/6) end with rail readings ``NAME <instant>mW/<average>mW``,
e.g. ``VDD_IN 5251mW/8535mW VDD_CPU_GPU_CV 512mW/1944mW VDD_SOC 2720mW/3659mW``.
``VDD_IN`` is the whole module's input power. The second number is a running
average since tegrastats started, so only the *instant* value is used here and
averaged over our own window. Older boards print ``VDD_IN 14025/14416`` (Xavier,
no unit) or ``POM_5V_IN 4520/4680`` (Nano); both are understood.

Energy per inference follows the paper's "dynamic energy": (busy power - idle
power) x latency.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

# A rail: a NAME in capitals followed by instant/average, with or without "mW".
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?\b")
_GR3D = re.compile(r"GR3D_FREQ\s+(\d+)%")
_RAM = re.compile(r"\bRAM\s+(\d+)/(\d+)MB")
_STAMP = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # module input power, newest name first


@dataclass
class TegraSample:
    rails_mw: Dict[str, int] = field(default_factory=dict)  # instant values
    rails_avg_mw: Dict[str, int] = field(default_factory=dict)
    gpu_percent: Optional[int] = None
    ram_used_mb: Optional[int] = None
    stamp: str = ""

    @property
    def total_mw(self) -> Optional[int]:
        for rail in TOTAL_RAILS:
            if rail in self.rails_mw:
                return self.rails_mw[rail]
        return None


def parse_line(line: str) -> Optional[TegraSample]:
    """One tegrastats line -> TegraSample, or None for a line with no power rail."""
    rails = {}
    averages = {}
    for name, instant, average in _RAIL.findall(line):
        if name in ("RAM", "SWAP", "IRAM"):  # "RAM 1343/7620MB" is memory, not a rail
            continue
        rails[name] = int(instant)
        averages[name] = int(average)
    if not rails:
        return None
    sample = TegraSample(rails_mw=rails, rails_avg_mw=averages)
    gpu = _GR3D.search(line)
    if gpu:
        sample.gpu_percent = int(gpu.group(1))
    ram = _RAM.search(line)
    if ram:
        sample.ram_used_mb = int(ram.group(1))
    stamp = _STAMP.match(line)
    if stamp:
        sample.stamp = stamp.group(1)
    return sample


def mean_total_mw(samples: Iterable[TegraSample]) -> Optional[float]:
    values = [s.total_mw for s in samples if s.total_mw is not None]
    return sum(values) / len(values) if values else None


def dynamic_energy_mj(busy_mw: float, idle_mw: float, latency_ms: float) -> float:
    """Dynamic energy per inference in millijoules: (busy - idle) [mW] x latency [ms].

    mW x ms = microjoules, hence the division by 1000.
    """
    return max(busy_mw - idle_mw, 0.0) * latency_ms / 1e3


def tegrastats_available() -> bool:
    return shutil.which("tegrastats") is not None


class TegrastatsSampler:
    """Runs ``tegrastats --interval N`` in the background and collects samples.

    ``with TegrastatsSampler() as s: ...; busy = s.window()`` - call ``mark()``
    to start a new window (e.g. idle, then busy).
    """

    def __init__(self, interval_ms: int = 100, command: Optional[List[str]] = None) -> None:
        self.command = command or ["tegrastats", "--interval", str(int(interval_ms))]
        self._samples: List[tuple] = []
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "TegrastatsSampler":
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = parse_line(line)
            if sample is not None:
                with self._lock:
                    self._samples.append((time.monotonic(), sample))

    def since(self, start: float, end: Optional[float] = None) -> List[TegraSample]:
        end = end if end is not None else float("inf")
        with self._lock:
            return [s for t, s in self._samples if start <= t <= end]

    def wait_for_samples(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._samples) >= count:
                    return True
            time.sleep(0.05)
        return False

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=2)
