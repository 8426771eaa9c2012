"""Raw image decoding for every supported encoding, and the errors for bad buffers."""

from __future__ import annotations

import numpy as np
import pytest

from fskd_ros.core.encoder_file import EncoderInfo
from fskd_ros.core.preprocessing import ImageFormatError, preprocess_batch, raw_to_rgb

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10


def _raw(array: np.ndarray, pad: int = 0) -> tuple:
    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return padded.shape[1], padded.tobytes()


@pytest.mark.parametrize("encoding,array", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full((2, 3), 255, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.zeros((2, 3), np.uint8)])),
])
def test_colour_encodings_decode_to_rgb(encoding, array):
    step, data = _raw(np.ascontiguousarray(array), pad=4)  # row padding must be skipped
    np.testing.assert_array_equal(raw_to_rgb(encoding, 2, 3, step, data), RGB)


def test_mono_encodings():
    mono = RGB[:, :, 0]
    step, data = _raw(np.ascontiguousarray(mono))
    out = raw_to_rgb("mono8", 2, 3, step, data)
    assert out.shape == (2, 3, 3) and np.all(out[:, :, 1] == mono)
    mono16 = mono.astype(np.uint16) * 257
    for big in (False, True):
        arr = mono16.astype(">u2" if big else "<u2")
        step, data = _raw(np.ascontiguousarray(arr))
        np.testing.assert_array_equal(raw_to_rgb("mono16", 2, 3, step, data, big)[:, :, 0], mono)


@pytest.mark.parametrize("encoding,h,w,step,size,match", [
    ("yuv422", 2, 3, 9, 18, "unsupported encoding"),
    ("rgb8", 0, 3, 9, 0, "empty"),
    ("rgb8", 2, 3, 8, 16, "step"),
    ("rgb8", 2, 3, 9, 17, "expected step"),
    ("rgb8", 20000, 3, 9, 9, "exceeds"),
])
def test_malformed_buffers_are_refused(encoding, h, w, step, size, match):
    with pytest.raises(ImageFormatError, match=match):
        raw_to_rgb(encoding, h, w, step, bytes(size))


def test_preprocess_resizes_and_normalises():
    info = EncoderInfo("x", [4, 5], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], 8)
    batch = preprocess_batch([np.full((10, 7, 3), 255, np.uint8)], info)
    assert batch.shape == (1, 3, 4, 5) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, 2.0)
