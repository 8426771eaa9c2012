"""The one description of the inspection pipeline.

Read by ``launch/inspect.launch.py`` (``ros2 launch fskd_ros inspect.launch.py``)
and by ``fskd-inspect`` (all nodes in one process), so both start the same
nodes, with the same parameters file, arguments and remappings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

PACKAGE = "fskd_ros"
NAMESPACE = "fskd"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeDescription:
    name: str
    executable: str  # installed under lib/fskd_ros for ros2 launch
    node_class: str  # "module:Class" for fskd-inspect
    # node parameter -> launch argument that sets it
    parameters_from_arguments: Dict[str, str] = field(default_factory=dict)
    # (topic inside the node, launch argument naming the real topic)
    remappings: List[Tuple[str, str]] = field(default_factory=list)


def share_dir() -> Path:
    """Installed share/fskd_ros, or the source tree when run from a checkout/pip."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError):  # not installed / AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[2]


def default_params_file() -> str:
    return str(share_dir() / "config" / "inspect.yaml")


def fastdds_profile() -> str:
    """Shared-memory transport profile (Fast DDS 2.6+ and 3.x)."""
    return str(share_dir() / "config" / "fastdds_shm.xml")


LAUNCH_ARGUMENTS = [
    LaunchArgument("camera_topic", "/camera/image_raw", "Image topic to classify (sensor_msgs/Image)"),
    # '' = keep the value of the parameters file, so a YAML can set these too.
    LaunchArgument("model", "", "ONNX encoder file ('' = params file; 'default' = the shipped encoder)"),
    LaunchArgument("gallery_path", "", "Gallery file loaded at start, saved on change ('' = params file)"),
    LaunchArgument("backend", "", "Encoder backend: onnxruntime or tensorrt ('' = params file)"),
    LaunchArgument("params_file", "", "Parameters YAML ('' = config/inspect.yaml of this package)"),
]

NODES = [
    NodeDescription(
        name="encoder", executable="encoder_node",
        node_class="fskd_ros.ros.encoder_node:EncoderNode",
        parameters_from_arguments={"model": "model", "backend": "backend"},
        remappings=[("image", "camera_topic")]),
    NodeDescription(
        name="classifier", executable="classifier_node",
        node_class="fskd_ros.ros.classifier_node:ClassifierNode",
        parameters_from_arguments={"model": "model", "gallery_path": "gallery_path"},
        remappings=[("image", "camera_topic")]),
]


def argument_defaults() -> Dict[str, str]:
    return {arg.name: arg.default for arg in LAUNCH_ARGUMENTS}


def parameter_overrides(node: NodeDescription, values: Dict[str, str]) -> Dict[str, str]:
    """Node parameters set by launch arguments; empty arguments leave the YAML value."""
    return {param: values[argument] for param, argument in node.parameters_from_arguments.items()
            if values.get(argument)}
