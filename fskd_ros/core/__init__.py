"""ROS-free runtime core. Importing this package must never import torch."""
