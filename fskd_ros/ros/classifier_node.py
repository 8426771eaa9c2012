"""Classifier node: embeddings -> classifications, enrollment and gallery services.

Enrollment, persistence and lifecycle follow ros4hri's hri_face_identification:
the gallery is loaded at configure, saved atomically after every change
(``autosave``) and on shutdown, and a gallery built with another encoder is
refused. Services answer ``success=false`` with a reason and leave the gallery
unchanged on any bad request.
"""

from __future__ import annotations

import collections
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, Deque, List, Optional, Tuple

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image

from fskd_ros.core.classifier import PrototypeClassifier
from fskd_ros.core.encoder_file import EncoderFileError, read_encoder_info, resolve_encoder_path
from fskd_ros.core.gallery import Gallery, GalleryError, validate_label
from fskd_ros.core.preprocessing import ImageFormatError
from fskd_ros.msg import Classification, Embedding
from fskd_ros.ros import qos
from fskd_ros.ros.annotate import draw_prediction
from fskd_ros.ros.encoder_node import run_nodes
from fskd_ros.ros.image_conversion import image_to_rgb, rgb_to_image
from fskd_ros.ros.managed_node import ManagedNode
from fskd_ros.ros.params import ParamSpec
from fskd_ros.srv import Encode, Enroll, Forget, ListClasses, LoadGallery, SaveGallery

PARAMETERS = [
    ParamSpec("model", "default", "ONNX encoder file (read for its id and base-class mean only)"),
    ParamSpec("gallery_path", "~/.ros/fskd_ros/gallery.npz", "Gallery file, loaded at start"),
    ParamSpec("autosave", True, "Save the gallery after every change and at shutdown"),
    ParamSpec("threshold", 0.3, "Open-set threshold on cosine similarity; below it a frame is unknown",
              (-1.0, 1.0), read_only=False),
    ParamSpec("top_k", 3, "Classes reported per frame", (1, 100), read_only=False),
    ParamSpec("max_classes", 1000, "Most classes the gallery holds", (1, 100000)),
    ParamSpec("max_shots_per_class", 1000, "Most shots one class holds", (1, 100000)),
    ParamSpec("max_enroll_images", 32, "Most images (or captured frames) per enroll request", (1, 1024)),
    ParamSpec("capture_timeout_s", 10.0, "Default time limit when capturing live frames", (0.1, 600.0)),
    ParamSpec("encode_timeout_s", 30.0, "Time limit for the encoder's encode service", (0.1, 600.0)),
    ParamSpec("annotation_cache", 30, "Frames kept to draw annotations on", (1, 1000)),
    ParamSpec("autostart", True, "Configure and activate on start (no lifecycle manager needed)"),
]


MAX_CONCURRENT_ENROLLS = 2
MAX_WAIT_S = 600.0


class _Capture:
    """Collects the next N live embeddings for an enroll request."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.vectors: List[np.ndarray] = []
        self.done = threading.Event()

    def offer(self, vector: np.ndarray) -> None:
        if len(self.vectors) < self.count:
            self.vectors.append(vector)
            if len(self.vectors) == self.count:
                self.done.set()


class ClassifierNode(ManagedNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("classifier", PARAMETERS, **kwargs)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.RLock()  # guards gallery + classifier
        self._save_lock = threading.Lock()  # orders disk writes (done outside _lock)
        self._frames_lock = threading.Lock()
        # At most this many enroll requests wait on the encoder at once; the
        # executor keeps threads free for frames and the encode service itself.
        self._enroll_slots = threading.BoundedSemaphore(MAX_CONCURRENT_ENROLLS)
        self._active = False
        self._capture: Optional[_Capture] = None
        self._capture_lock = threading.Lock()
        self._frames: Deque[Tuple[Tuple[int, int], Image]] = collections.deque()
        self.gallery: Optional[Gallery] = None
        self.classifier: Optional[PrototypeClassifier] = None
        self.encoder_id = ""
        self._embedding_sub = None
        self._image_sub = None
        self._pubs: dict = {}
        self._services: list = []
        self._timers: list = []
        self._frame_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._client_group = ReentrantCallbackGroup()
        self._encode_client = None
        self._local_encoder = False
        self.autostart()

    # -- lifecycle ---------------------------------------------------------
    def _configure(self) -> TransitionCallbackReturn:
        try:
            info = read_encoder_info(resolve_encoder_path(self.params["model"]))
        except EncoderFileError as exc:
            self.get_logger().error(f"cannot read encoder metadata: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.encoder_id = info.encoder_id
        self.gallery = self._new_gallery(info.embedding_dim, info.base_mean_array())
        self.classifier = PrototypeClassifier(self.gallery, self.params["threshold"], self.params["top_k"])
        self._load_initial_gallery()
        self._pubs["classification"] = self.create_lifecycle_publisher(
            Classification, "classification", qos.RESULTS)
        self._pubs["annotated"] = self.create_lifecycle_publisher(
            Image, "annotated_image", qos.IMAGE_PUBLISHER)
        self._encode_client = self.create_client(Encode, "encode", callback_group=self._client_group)
        for srv_type, name, callback in (
                (Enroll, "enroll", self._on_enroll), (Forget, "forget", self._on_forget),
                (ListClasses, "list_classes", self._on_list), (SaveGallery, "save_gallery", self._on_save),
                (LoadGallery, "load_gallery", self._on_load)):
            self._services.append(self.create_service(srv_type, name, callback,
                                                      callback_group=self._service_group))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if not self._local_encoder:
            self._embedding_sub = self.create_subscription(
                Embedding, "embedding", self._on_embedding, qos.RESULTS,
                callback_group=self._frame_group)
        # Subscribe to camera frames only while someone watches annotated_image.
        self._timers.append(self.create_timer(0.5, self._update_image_subscription))
        self._timers.append(self.create_timer(1.0, self._publish_diagnostics))
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers.clear()
        if self._embedding_sub is not None:
            self.destroy_subscription(self._embedding_sub)
            self._embedding_sub = None
        self._set_image_subscription(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.shutdown_hook()
        for service in self._services:
            self.destroy_service(service)
        self._services.clear()
        for publisher in self._pubs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._pubs.clear()
        if self._encode_client is not None:
            self.destroy_client(self._encode_client)
            self._encode_client = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.shutdown_hook()
        return TransitionCallbackReturn.SUCCESS

    def shutdown_hook(self) -> None:
        """Final save (called by the executor runner on Ctrl-C too)."""
        if self.gallery is not None and self.params["autosave"] and len(self.gallery):
            self._autosave()

    # -- gallery helpers ---------------------------------------------------
    def attach_local_encoder(self, encoder: Any) -> None:
        """Take embeddings from an encoder node in this process instead of the topic."""
        self._local_encoder = True
        if self._embedding_sub is not None:
            self.destroy_subscription(self._embedding_sub)
            self._embedding_sub = None
        encoder.add_local_listener(self._on_embedding)

    def _new_gallery(self, dim: int, base_mean: np.ndarray) -> Gallery:
        return Gallery(self.encoder_id, dim, base_mean, max_classes=self.params["max_classes"],
                       max_shots_per_class=self.params["max_shots_per_class"])

    def _gallery_path(self, requested: str = "") -> Path:
        return Path(requested or self.params["gallery_path"]).expanduser()

    def _load_initial_gallery(self) -> None:
        path = self._gallery_path()
        if not path.exists():
            self.get_logger().info(f"no gallery at {path}; starting empty")
            return
        try:
            self._replace_gallery(path)
            self.get_logger().info(
                f"loaded gallery {path}: {len(self.gallery)} classes {self.gallery.shot_counts()}")
        except GalleryError as exc:
            # Keep the unusable file (it may be another encoder's work) out of autosave's way.
            aside = path.with_name(f"{path.name}.rejected-{time.time_ns()}")
            path.rename(aside)
            self.get_logger().error(f"{exc}; moved it to {aside} and started with an empty gallery")

    def _replace_gallery(self, path: Path) -> None:
        loaded = Gallery.load(path, encoder_id=self.encoder_id,
                              max_classes=self.params["max_classes"],
                              max_shots_per_class=self.params["max_shots_per_class"])
        with self._lock:
            loaded.version = max(loaded.version, self.gallery.version + 1)
            self.gallery = loaded
            self.classifier.gallery = loaded

    def _autosave(self) -> Optional[str]:
        if not self.params["autosave"]:
            return None
        try:
            self._save(self._gallery_path())
        except OSError as exc:
            self.get_logger().error(f"could not save the gallery: {exc}")
            return f" (autosave failed: {exc})"
        return None

    def _save(self, path: Path) -> int:
        """Write a snapshot; the per-frame path never waits for the disk."""
        with self._save_lock:
            with self._lock:
                snapshot = self.gallery.copy()
            snapshot.save(path)
        return snapshot.version

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        with self._lock:
            for param in params:
                if param.name == "threshold" and self.classifier is not None:
                    self.classifier.threshold = float(param.value)
                elif param.name == "top_k" and self.classifier is not None:
                    self.classifier.top_k = int(param.value)
                if param.name in self.params:
                    self.params[param.name] = param.value
        return SetParametersResult(successful=True)

    # -- per-frame path ----------------------------------------------------
    def _on_embedding(self, msg: Embedding) -> None:
        started = time.perf_counter()
        if not self._active:
            return
        if msg.encoder_id != self.encoder_id:
            self.get_logger().warning(
                f"ignoring embeddings from encoder '{msg.encoder_id}': this classifier uses "
                f"'{self.encoder_id}' (set the same model parameter on both nodes)",
                throttle_duration_sec=5.0)
            return
        vector = np.asarray(msg.vector, dtype=np.float32)
        if vector.shape != (self.gallery.embedding_dim,) or not np.all(np.isfinite(vector)):
            self.get_logger().warning(
                f"ignoring an embedding of {vector.size} values (expected "
                f"{self.gallery.embedding_dim} finite values)", throttle_duration_sec=5.0)
            return
        with self._capture_lock:
            if self._capture is not None:
                self._capture.offer(vector)
        with self._lock:
            (prediction,) = self.classifier.predict(vector[None])
            version = self.gallery.version
            threshold = self.classifier.threshold
        out = Classification()
        out.header = msg.header
        out.label, out.score, out.unknown = prediction.label, prediction.score, prediction.unknown
        out.threshold = float(threshold)
        out.top_labels, out.top_scores = prediction.top_labels, prediction.top_scores
        out.gallery_version = version
        out.encoder_id = self.encoder_id
        out.inference_ms = float(msg.inference_ms + (time.perf_counter() - started) * 1e3)
        self._pubs["classification"].publish(out)
        self.stats.frame(out.inference_ms)
        if self._image_sub is not None:
            self._publish_annotation(msg.header, prediction)

    def _publish_diagnostics(self) -> None:
        values = self.stats.summary()
        with self._lock:
            values.update(classes=len(self.gallery), gallery_version=self.gallery.version,
                          threshold=self.classifier.threshold, encoder_id=self.encoder_id,
                          gallery_path=str(self._gallery_path()))
        empty = values["classes"] == 0
        self.publish_diagnostics(
            "classifier", "no classes enrolled" if empty else f"{values['classes']} classes", values, empty)

    def _update_image_subscription(self) -> None:
        self._set_image_subscription(self._pubs["annotated"].get_subscription_count() > 0)

    def _set_image_subscription(self, wanted: bool) -> None:
        if wanted and self._image_sub is None:
            self._image_sub = self.create_subscription(
                Image, "image", self._on_image, qos.IMAGE_SUBSCRIPTION,
                callback_group=self._frame_group)
        elif not wanted and self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
            with self._frames_lock:
                self._frames.clear()

    def _on_image(self, msg: Image) -> None:
        with self._frames_lock:
            self._frames.append(((msg.header.stamp.sec, msg.header.stamp.nanosec), msg))
            while len(self._frames) > self.params["annotation_cache"]:
                self._frames.popleft()

    def _publish_annotation(self, header: Any, prediction: Any) -> None:
        key = (header.stamp.sec, header.stamp.nanosec)
        with self._frames_lock:
            frame = next((image for stamp, image in reversed(self._frames) if stamp == key), None)
        if frame is None:
            return
        try:
            rgb = image_to_rgb(frame)
        except ImageFormatError:
            return
        self._pubs["annotated"].publish(rgb_to_image(draw_prediction(rgb, prediction), frame.header))

    # -- services ----------------------------------------------------------
    def _on_enroll(self, request: Enroll.Request, response: Enroll.Response) -> Enroll.Response:
        response.success = False
        try:
            label = validate_label(request.label)
        except GalleryError as exc:
            response.message = str(exc)
            return self._fill_enroll(response, request.label)
        limit = self.params["max_enroll_images"]
        if request.images and request.capture_frames:
            response.message = "give either images or capture_frames, not both"
        elif not request.images and not request.capture_frames:
            response.message = "no images given and capture_frames is 0: nothing to enroll"
        elif max(len(request.images), request.capture_frames) > limit:
            response.message = (f"{max(len(request.images), request.capture_frames)} shots in one "
                                f"request; at most {limit} (parameter max_enroll_images)")
        elif not self._enroll_slots.acquire(blocking=False):
            response.message = (f"{MAX_CONCURRENT_ENROLLS} enroll requests are already being "
                                "processed; retry when one has answered")
        else:
            try:
                vectors, error = (
                    self._encode_remote(request.images) if request.images
                    else self._capture_live(request.capture_frames, request.capture_timeout_s))
            finally:
                self._enroll_slots.release()
            if error:
                response.message = error
            else:
                try:
                    with self._lock:
                        shots = self.gallery.add(label, vectors)
                    saved = self._autosave() or ""
                    response.success = True
                    response.message = f"enrolled {len(vectors)} shots of '{label}' ({shots} held){saved}"
                    self.get_logger().info(response.message)
                except GalleryError as exc:
                    response.message = str(exc)
        if not response.success:
            self.get_logger().warning(f"enroll '{request.label}' refused: {response.message}")
        return self._fill_enroll(response, label if response.success else request.label)

    def _fill_enroll(self, response: Enroll.Response, label: str) -> Enroll.Response:
        with self._lock:
            response.shots = self.gallery.shot_counts().get(label, 0)
            response.num_classes = len(self.gallery)
            response.gallery_version = self.gallery.version
        return response

    def _encode_remote(self, images: List[Image]) -> Tuple[Optional[np.ndarray], str]:
        if not self._encode_client.wait_for_service(timeout_sec=2.0):
            return None, "the encoder's encode service is not available"
        request = Encode.Request(images=list(images))
        done = threading.Event()
        future = self._encode_client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.params["encode_timeout_s"]):
            self._encode_client.remove_pending_request(future)
            return None, f"the encoder did not answer within {self.params['encode_timeout_s']} s"
        result = future.result()
        if not result.success:
            return None, f"encoder refused the images: {result.message}"
        if result.encoder_id != self.encoder_id:
            return None, (f"encoder '{result.encoder_id}' differs from the classifier's "
                          f"'{self.encoder_id}'")
        return np.asarray([e.vector for e in result.embeddings], dtype=np.float32), ""

    def _capture_live(self, count: int, timeout_s: float) -> Tuple[Optional[np.ndarray], str]:
        # 0 (unset), NaN or absurd values fall back to / are capped at sane limits.
        timeout = (min(float(timeout_s), MAX_WAIT_S) if math.isfinite(timeout_s) and timeout_s > 0
                   else self.params["capture_timeout_s"])
        capture = _Capture(count)
        with self._capture_lock:
            if self._capture is not None:
                return None, "another capture is in progress"
            self._capture = capture
        try:
            finished = capture.done.wait(timeout)
        finally:
            with self._capture_lock:
                self._capture = None
        if not finished:
            return None, (f"captured {len(capture.vectors)} of {count} frames in {timeout:.1f} s; "
                          "is the camera publishing? nothing was enrolled")
        return np.stack(capture.vectors), ""

    def _on_forget(self, request: Forget.Request, response: Forget.Response) -> Forget.Response:
        try:
            with self._lock:
                self.gallery.remove(request.label)
            response.success = True
            response.message = f"forgot '{request.label}'" + (self._autosave() or "")
        except GalleryError as exc:
            response.success, response.message = False, str(exc)
        with self._lock:
            response.num_classes, response.gallery_version = len(self.gallery), self.gallery.version
        return response

    def _on_list(self, request: ListClasses.Request, response: ListClasses.Response) -> ListClasses.Response:
        with self._lock:
            counts = self.gallery.shot_counts()
            response.labels = list(counts)
            response.shots = list(counts.values())
            response.gallery_version = self.gallery.version
        response.encoder_id = self.encoder_id
        return response

    def _on_save(self, request: SaveGallery.Request, response: SaveGallery.Response) -> SaveGallery.Response:
        path = self._gallery_path(request.path)
        try:
            response.gallery_version = self._save(path)
            response.success, response.message, response.path = True, f"saved to {path}", str(path)
        except OSError as exc:
            response.success, response.message = False, f"could not save to {path}: {exc}"
        return response

    def _on_load(self, request: LoadGallery.Request, response: LoadGallery.Response) -> LoadGallery.Response:
        path = self._gallery_path(request.path)
        try:
            self._replace_gallery(path)
            response.success = True
            response.message = f"loaded {path}"
        except GalleryError as exc:
            response.success, response.message = False, f"{exc}; the current gallery is kept"
        with self._lock:
            response.num_classes, response.gallery_version = len(self.gallery), self.gallery.version
        return response


def main(args: Optional[List[str]] = None) -> int:
    return run_nodes([ClassifierNode], args)


if __name__ == "__main__":
    sys.exit(main())
