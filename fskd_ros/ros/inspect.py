"""``fskd-inspect``: the inspection pipeline in one process.

Starts the nodes of :mod:`fskd_ros.ros.description` (the same ones
``ros2 launch fskd_ros inspect.launch.py`` starts) on one multi-threaded
executor. Arguments use launch syntax (``camera_topic:=/cam/image``) or
options (``--camera-topic /cam/image``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Dict, List, Optional

from fskd_ros.ros.description import (LAUNCH_ARGUMENTS, NAMESPACE, NODES, NodeDescription,
                                      default_params_file, fastdds_profile, parameter_overrides)


def parse_arguments(argv: List[str]) -> Dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="fskd-inspect", description=__doc__.split("\n\n")[0],
        epilog="Launch-style NAME:=VALUE arguments are accepted too.")
    for arg in LAUNCH_ARGUMENTS:
        parser.add_argument("--" + arg.name.replace("_", "-"), dest=arg.name,
                            default=arg.default, help=f"{arg.description} (default: {arg.default!r})")
    launch_style = [a for a in argv if ":=" in a and not a.startswith("-")]
    values = vars(parser.parse_args([a for a in argv if a not in launch_style]))
    known = {arg.name for arg in LAUNCH_ARGUMENTS}
    for item in launch_style:
        name, value = item.split(":=", 1)
        if name not in known:
            parser.error(f"unknown argument {name!r}; known: {', '.join(sorted(known))}")
        values[name] = value
    return values


def node_cli_args(node: NodeDescription, values: Dict[str, str]) -> List[str]:
    """The parameters file and remappings a launch Node action would pass."""
    args = ["--ros-args", "--params-file", values["params_file"] or default_params_file()]
    for topic, argument in node.remappings:
        args += ["-r", f"{topic}:={values[argument]}"]
    return args


def node_parameter_overrides(node: NodeDescription, values: Dict[str, str]) -> list:
    """Argument-driven parameters; like launch's, they win over the YAML file."""
    from rclpy.parameter import Parameter

    return [Parameter(name, value=value) for name, value in parameter_overrides(node, values).items()]


def node_factories(values: Dict[str, str]) -> List[Callable[[], object]]:
    factories = []
    for node in NODES:
        module_name, class_name = node.node_class.split(":")
        node_class = getattr(importlib.import_module(module_name), class_name)
        kwargs = {"namespace": NAMESPACE, "cli_args": node_cli_args(node, values),
                  "parameter_overrides": node_parameter_overrides(node, values)}
        factories.append(lambda cls=node_class, kw=kwargs: cls(**kw))
    return factories


def connect_in_process(nodes: List[object]) -> None:
    """Encoder -> classifier without a DDS hop when both run in this process."""
    from fskd_ros.ros.classifier_node import ClassifierNode
    from fskd_ros.ros.encoder_node import EncoderNode

    encoders = [n for n in nodes if isinstance(n, EncoderNode)]
    for classifier in (n for n in nodes if isinstance(n, ClassifierNode)):
        for encoder in encoders:
            classifier.attach_local_encoder(encoder)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    values = parse_arguments(argv[: len(argv) - len(ros_args)])
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile())
    from fskd_ros.ros.encoder_node import run_nodes  # after the env: rclpy reads it at init

    # rclpy must not see the launch-style arguments as (deprecated) remap rules.
    return run_nodes(node_factories(values), [sys.argv[0]] + ros_args, connect=connect_in_process)


if __name__ == "__main__":
    sys.exit(main())
