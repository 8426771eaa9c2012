"""Encoder node: camera frames -> embeddings, plus the ``encode`` service.

Lifecycle: configure loads the encoder backend (and warms it up), activate
subscribes to the camera. With ``autostart`` (default) it goes to active by
itself, so ``ros2 launch`` / ``fskd-inspect`` need no lifecycle manager.
"""

from __future__ import annotations

import sys
import time
from typing import Any, List, Optional

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image

from fskd_ros.core.backends import BackendError, EncoderBackend, create_backend
from fskd_ros.core.encoder_file import EncoderFileError, resolve_encoder_path
from fskd_ros.core.preprocessing import ImageFormatError, preprocess_batch
from fskd_ros.msg import Embedding
from fskd_ros.ros import qos
from fskd_ros.ros.image_conversion import image_to_rgb
from fskd_ros.ros.managed_node import ManagedNode
from fskd_ros.ros.params import ParamSpec
from fskd_ros.srv import Encode

PARAMETERS = [
    ParamSpec("model", "default", "ONNX encoder file; 'default' = the encoder shipped with fskd_ros"),
    ParamSpec("backend", "onnxruntime", "Inference backend: onnxruntime or tensorrt"),
    ParamSpec("device", "cpu", "onnxruntime device: cpu or cuda"),
    ParamSpec("intra_op_threads", 1, "onnxruntime threads; 1 leaves the other cores to DDS and the camera (0 = all cores)", (0, 64)),
    ParamSpec("precision", "fp16", "tensorrt precision: fp16, fp32 or int8"),
    ParamSpec("engine_cache_dir", "", "tensorrt engine cache folder ('' = ~/.cache/fskd_ros/engines)"),
    ParamSpec("allow_engine_build", True, "tensorrt: build a missing/stale engine (else refuse)"),
    ParamSpec("max_encode_images", 64, "Most images one encode request may carry", (1, 1024)),
    ParamSpec("autostart", True, "Configure and activate on start (no lifecycle manager needed)"),
]


class EncoderNode(ManagedNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("encoder", PARAMETERS, **kwargs)
        self.backend: Optional[EncoderBackend] = None
        self._image_sub = None
        self._encode_srv = None
        self._embedding_pub = None
        self._frame_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._local_listeners: List[Any] = []
        self.autostart()

    # -- lifecycle ---------------------------------------------------------
    def _configure(self) -> TransitionCallbackReturn:
        path = resolve_encoder_path(self.params["model"])
        name = self.params["backend"]
        options = ({"device": self.params["device"],
                    "intra_op_threads": self.params["intra_op_threads"]}
                   if name == "onnxruntime" else
                   {"precision": self.params["precision"],
                    "cache_dir": self.params["engine_cache_dir"] or None,
                    "allow_build": self.params["allow_engine_build"]})
        try:
            started = time.perf_counter()
            self.backend = create_backend(name, path, **options)
            self.backend.warmup()
        except (BackendError, EncoderFileError) as exc:
            self.get_logger().error(f"cannot load encoder: {exc}")
            return TransitionCallbackReturn.FAILURE
        info = self.backend.info
        self.get_logger().info(
            f"encoder {info.encoder_id} ({info.arch}, {info.input_size[0]}x{info.input_size[1]}, "
            f"{info.embedding_dim}-d) on {self.backend.describe()}, ready in "
            f"{time.perf_counter() - started:.2f} s")
        if not info.trained:
            self.get_logger().warning(
                "this encoder has random weights: classification accuracy is meaningless")
        self._embedding_pub = self.create_lifecycle_publisher(Embedding, "embedding", qos.RESULTS)
        self._encode_srv = self.create_service(Encode, "encode", self._on_encode,
                                               callback_group=self._service_group)
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        return TransitionCallbackReturn.SUCCESS

    def _publish_diagnostics(self) -> None:
        if self.backend is None:
            return
        values = self.stats.summary()
        values.update(encoder_id=self.backend.info.encoder_id, backend=self.backend.describe(),
                      trained=self.backend.info.trained)
        warn = values["rejected_frames"] > 0 or not self.backend.info.trained
        message = ("untrained encoder" if not self.backend.info.trained else
                   f"{values['rejected_frames']} malformed frames dropped" if values["rejected_frames"]
                   else "running")
        self.publish_diagnostics("encoder", message, values, warn)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._image_sub = self.create_subscription(
            Image, "image", self._on_image, qos.IMAGE_SUBSCRIPTION,
            callback_group=self._frame_group)
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        if self._encode_srv is not None:
            self.destroy_service(self._encode_srv)
            self._encode_srv = None
        if self._embedding_pub is not None:
            self.destroy_lifecycle_publisher(self._embedding_pub)
            self._embedding_pub = None
        self.destroy_timer(self._diagnostics_timer)
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        # Stop every user of the backend before releasing it (device buffers on TensorRT).
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        if self._encode_srv is not None:
            self.destroy_service(self._encode_srv)
            self._encode_srv = None
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()
        return TransitionCallbackReturn.SUCCESS

    # -- work --------------------------------------------------------------
    def encode_images(self, images: List[np.ndarray]) -> np.ndarray:
        batch = preprocess_batch(images, self.backend.info)
        return self.backend.encode(batch)

    def _on_image(self, msg: Image) -> None:
        started = time.perf_counter()
        if self.backend is None:
            return
        try:
            rgb = image_to_rgb(msg)
        except ImageFormatError as exc:
            self.stats.reject()
            self.get_logger().warning(f"dropping frame: {exc}", throttle_duration_sec=5.0)
            return
        try:
            vector = self.encode_images([rgb])[0]
        except Exception as exc:  # noqa: BLE001 - a backend failure must not kill the node
            self.stats.reject()
            self.get_logger().error(f"encoder failed on a frame: {exc}", throttle_duration_sec=5.0)
            return
        out = Embedding()
        out.header = msg.header
        out.vector = vector.astype(np.float32).tolist()
        out.encoder_id = self.backend.info.encoder_id
        out.inference_ms = float((time.perf_counter() - started) * 1e3)
        self.stats.frame(out.inference_ms)
        self._embedding_pub.publish(out)
        for listener in self._local_listeners:
            listener(out)

    def add_local_listener(self, callback: Any) -> None:
        """Hand embeddings straight to a node in the same process (fskd-inspect).

        rclpy has no intra-process transport, so this skips one DDS round trip
        per frame; the ``embedding`` topic is still published for other nodes.
        """
        self._local_listeners.append(callback)

    def _on_encode(self, request: Encode.Request, response: Encode.Response) -> Encode.Response:
        response.encoder_id = self.backend.info.encoder_id if self.backend else ""
        if self.backend is None:
            response.success, response.message = False, "encoder is not configured"
            return response
        if not request.images:
            response.success, response.message = False, "no images in the request"
            return response
        if len(request.images) > self.params["max_encode_images"]:
            response.success = False
            response.message = (f"{len(request.images)} images in one request; at most "
                                f"{self.params['max_encode_images']} (parameter max_encode_images)")
            return response
        images = []
        for index, image in enumerate(request.images):
            try:
                images.append(image_to_rgb(image))
            except ImageFormatError as exc:
                response.success, response.message = False, f"image {index}: {exc}"
                return response
        started = time.perf_counter()
        try:
            vectors = self.encode_images(images)
        except Exception as exc:  # noqa: BLE001
            response.success, response.message = False, f"encoder failed: {exc}"
            return response
        elapsed_ms = (time.perf_counter() - started) * 1e3 / len(images)
        for image, vector in zip(request.images, vectors):
            embedding = Embedding()
            embedding.header = image.header
            embedding.vector = vector.astype(np.float32).tolist()
            embedding.encoder_id = response.encoder_id
            embedding.inference_ms = float(elapsed_ms)
            response.embeddings.append(embedding)
        response.success, response.message = True, f"encoded {len(images)} images"
        return response


def run_nodes(node_factories: List[Any], args: Optional[List[str]] = None,
              connect: Optional[Any] = None) -> int:
    """Spin nodes on one multi-threaded executor until Ctrl-C; 1 if any failed to start.

    ``connect(nodes)``, if given, wires nodes of the same process together.
    """
    rclpy.init(args=args)
    nodes = []
    try:
        for factory in node_factories:
            nodes.append(factory())
    except RuntimeError as exc:
        print(f"fskd_ros: {exc}", file=sys.stderr)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        return 1
    if connect is not None:
        connect(nodes)
    # Enough threads that waiting enroll requests never starve frames or services.
    executor = MultiThreadedExecutor(num_threads=max(6, 3 * len(nodes)))
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            if hasattr(node, "shutdown_hook"):
                node.shutdown_hook()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: Optional[List[str]] = None) -> int:
    return run_nodes([EncoderNode], args)


if __name__ == "__main__":
    sys.exit(main())
