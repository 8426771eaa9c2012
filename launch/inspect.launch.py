"""ros2 launch fskd_ros inspect.launch.py [camera_topic:=...] [model:=...] [gallery_path:=...] [backend:=...]

Starts the encoder and classifier nodes under /fskd. The nodes, parameters and
remappings come from fskd_ros.ros.description, which fskd-inspect reads too.
Arguments left empty keep the value of the parameters file.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from fskd_ros.ros.description import (LAUNCH_ARGUMENTS, NAMESPACE, NODES, PACKAGE,
                                      default_params_file, fastdds_profile, parameter_overrides)


def _nodes(context: LaunchContext) -> list:
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in LAUNCH_ARGUMENTS}
    return [Node(package=PACKAGE, executable=node.executable, name=node.name, namespace=NAMESPACE,
                 parameters=[values["params_file"], parameter_overrides(node, values)],
                 remappings=[(topic, values[argument]) for topic, argument in node.remappings],
                 output="screen", emulate_tty=True)
            for node in NODES]


def generate_launch_description() -> LaunchDescription:
    defaults = {"params_file": default_params_file()}
    actions = [DeclareLaunchArgument(arg.name, default_value=defaults.get(arg.name, arg.default),
                                     description=arg.description)
               for arg in LAUNCH_ARGUMENTS]
    # Shared-memory transport for camera frames, unless the user chose a profile.
    actions.append(SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=fastdds_profile())))
    actions.append(OpaqueFunction(function=_nodes))
    return LaunchDescription(actions)
