"""fskd_ros: few-shot recognition with a knowledge-distilled MobileViT encoder.

The package has three layers:

* ``fskd_ros.core``: ROS-free runtime (encoder file metadata, preprocessing,
  inference backends, gallery, few-shot classifier). Never imports torch.
* ``fskd_ros.ros``: thin ROS 2 nodes over the core.
* ``fskd_ros.training``: distillation, training, evaluation and export (torch).
"""

# The ROS build installs generated msg/srv modules into the install space's
# copy of this package; extending __path__ lets them be found even when the
# source tree comes first on sys.path (pytest, python -m from the repo root).
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
