"""A small client for the pipeline's services and topics (demo, tests, benchmarks).

Shows how another node enrolls and reads classifications; see the README's
10-line example for the minimal form.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from fskd_ros.msg import Classification
from fskd_ros.ros import qos
from fskd_ros.srv import Enroll, Forget, ListClasses, LoadGallery, SaveGallery

SERVICES = {"enroll": Enroll, "forget": Forget, "list_classes": ListClasses,
            "save_gallery": SaveGallery, "load_gallery": LoadGallery}


class PipelineClient:
    """Owns a node spinning in a background thread; call services synchronously."""

    def __init__(self, namespace: str = "/fskd", name: str = "fskd_client") -> None:
        if not rclpy.ok():
            rclpy.init()
        self.node = Node(name)
        self.namespace = namespace.rstrip("/")
        self.clients = {key: self.node.create_client(srv, f"{self.namespace}/{key}")
                        for key, srv in SERVICES.items()}
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def wait_for_services(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        for key, client in self.clients.items():
            while not client.wait_for_service(timeout_sec=0.2):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service {self.namespace}/{key} did not appear in {timeout_s} s")

    def call(self, service: str, timeout_s: float = 60.0, **fields: Any) -> Any:
        request = SERVICES[service].Request(**fields)
        future = self.clients[service].call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            raise TimeoutError(f"{service} did not answer within {timeout_s} s")
        return future.result()

    def subscribe_classifications(self, callback: Callable[[Classification], None]) -> Any:
        return self.node.create_subscription(
            Classification, f"{self.namespace}/classification", callback, qos.RESULTS)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
