"""QoS profiles used by the nodes (REP-2003)."""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

# Camera subscriptions: best effort, keep only the newest frame, so a slow
# encoder never works through a stale backlog.
IMAGE_SUBSCRIPTION = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability)

# Image publishers (replay, annotated output): system default, reliable,
# compatible with both reliable and best-effort subscribers.
IMAGE_PUBLISHER = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)

# Small per-frame results (embeddings, classifications).
RESULTS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.RELIABLE)

# Late-joining subscribers get the last value (replay source index).
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
