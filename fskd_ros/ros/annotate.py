"""Draw the classification on a frame for rviz (PIL only, no OpenCV needed)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fskd_ros.core.classifier import Prediction

KNOWN = (40, 170, 60)
UNKNOWN = (220, 50, 40)


def draw_prediction(rgb: np.ndarray, prediction: Prediction) -> np.ndarray:
    """Return a copy of the frame with a banner: label, score, unknown state."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    if not prediction.label:
        text = "no classes enrolled"
    elif prediction.unknown:
        text = f"UNKNOWN (nearest {prediction.label} {prediction.score:.2f})"
    else:
        text = f"{prediction.label} {prediction.score:.2f}"
    colour = UNKNOWN if prediction.unknown else KNOWN
    banner = max(14, image.height // 12)
    draw.rectangle([0, 0, image.width, banner], fill=colour)
    draw.text((4, max(0, (banner - 11) // 2)), text, fill=(255, 255, 255), font=font)
    if prediction.unknown:  # a frame in the warning colour makes the state visible at a glance
        draw.rectangle([0, 0, image.width - 1, image.height - 1], outline=colour, width=3)
    return np.asarray(image)
