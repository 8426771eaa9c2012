"""What the encoder and classifier nodes share: a lifecycle node that can start
itself, logs configure failures, and reports on /diagnostics."""

from __future__ import annotations

import traceback
from typing import Any, Sequence

from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from fskd_ros.ros import diagnostics
from fskd_ros.ros.params import ParamSpec, declare_parameters


class ManagedNode(LifecycleNode):
    def __init__(self, name: str, parameters: Sequence[ParamSpec], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.params = declare_parameters(self, parameters)
        self.stats = diagnostics.FrameStats()
        self._diagnostics_pub = self.create_publisher(diagnostics.DiagnosticArray, "/diagnostics", 10)

    def autostart(self) -> None:
        """With the ``autostart`` parameter, go to active now (no lifecycle manager needed)."""
        if not self.params["autostart"]:
            return
        label = self.get_name()
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"{label} failed to configure (see the error above)")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"{label} failed to activate")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        # rclpy's lifecycle swallows exceptions from transitions: log them here.
        try:
            return self._configure()
        except Exception:  # noqa: BLE001 - anything unexpected must be visible
            self.get_logger().error(f"configure failed:\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE

    def _configure(self) -> TransitionCallbackReturn:
        raise NotImplementedError

    def publish_diagnostics(self, role: str, message: str, values: dict, warn: bool) -> None:
        diagnostics.publish(self, self._diagnostics_pub, diagnostics.make_status(
            f"{self.get_fully_qualified_name()}: {role}", "fskd_ros", message, values,
            diagnostics.DiagnosticStatus.WARN if warn else None))
