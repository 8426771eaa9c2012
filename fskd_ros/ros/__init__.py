"""Thin ROS 2 nodes over fskd_ros.core. Nothing here imports torch."""
