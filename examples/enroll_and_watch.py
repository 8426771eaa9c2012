"""Enroll a class from image files, then print classifications (README example).

    python3 examples/enroll_and_watch.py crack crack1.png crack2.png crack3.png
"""
import sys

import numpy as np
import rclpy
from PIL import Image as PILImage

from fskd_ros.msg import Classification
from fskd_ros.ros.image_conversion import rgb_to_image  # or cv_bridge.CvBridge().cv2_to_imgmsg
from fskd_ros.srv import Enroll

rclpy.init()
node = rclpy.create_node("enroll_example")
enroll = node.create_client(Enroll, "/fskd/enroll")
enroll.wait_for_service()
shots = [rgb_to_image(np.asarray(PILImage.open(path).convert("RGB"))) for path in sys.argv[2:]]
future = enroll.call_async(Enroll.Request(label=sys.argv[1], images=shots))
rclpy.spin_until_future_complete(node, future)
print(future.result().success, future.result().message, flush=True)
node.create_subscription(Classification, "/fskd/classification",
                         lambda m: print(m.label, f"{m.score:.2f}", "unknown" if m.unknown else "", flush=True), 10)
rclpy.spin(node)
