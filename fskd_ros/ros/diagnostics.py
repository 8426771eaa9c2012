"""/diagnostics for the nodes (rqt_robot_monitor, diagnostic_aggregator).

The per-frame path only appends a number to a bounded deque; the 1 Hz timer
does the statistics.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Deque, Dict, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class FrameStats:
    """Thread-safe counters and a window of recent per-frame latencies."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self._latencies: Deque[float] = collections.deque(maxlen=window)
        self._times: Deque[float] = collections.deque(maxlen=window)
        self.frames = 0
        self.rejected = 0

    def frame(self, latency_ms: float) -> None:
        with self._lock:
            self.frames += 1
            self._latencies.append(latency_ms)
            self._times.append(time.monotonic())

    def reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def summary(self) -> Dict[str, float]:
        with self._lock:
            latencies = list(self._latencies)
            times = list(self._times)
            frames, rejected = self.frames, self.rejected
        recent = [t for t in times if t > time.monotonic() - 5.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        return {
            "frames": frames, "rejected_frames": rejected, "fps_5s": fps,
            "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else 0.0,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else 0.0,
        }


def make_status(name: str, hardware_id: str, message: str, values: Dict[str, object],
                level: Optional[bytes] = None) -> DiagnosticStatus:
    status = DiagnosticStatus()
    status.level = DiagnosticStatus.OK if level is None else level
    status.name, status.hardware_id, status.message = name, hardware_id, message
    status.values = [KeyValue(key=key, value=(f"{value:.2f}" if isinstance(value, float) else str(value)))
                     for key, value in values.items()]
    return status


def publish(node, publisher, status: DiagnosticStatus) -> None:
    array = DiagnosticArray()
    array.header.stamp = node.get_clock().now().to_msg()
    array.status = [status]
    publisher.publish(array)
