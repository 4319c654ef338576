"""Pillow preprocessing: geometry, normalisation, layout, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgekit.errors import InputError
from edgekit.runtime.preprocess import preprocess


def test_stretch_normalise_layout():
    image = Image.new("RGB", (40, 20), (255, 0, 128))
    x = preprocess(image, {"resize": [10, 10], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "layout": "nchw"})
    assert x.shape == (1, 3, 10, 10) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, -1.0, (128 / 255 - 0.5) / 0.5], atol=1e-6)


def test_center_crop_keeps_the_middle():
    image = Image.new("L", (30, 10), 0)
    image.paste(255, (10, 0, 20, 10))  # a white middle third
    x = preprocess(image, {"resize": [10, 10], "mode": "center_crop", "color": "L"})
    assert x.shape == (1, 10, 10, 1) and x.min() > 0.9


def test_letterbox_pads_with_fill():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    x = preprocess(image, {"resize": [40, 40], "mode": "letterbox", "scale": 1.0})
    assert x[0, 0, 0, 0] == 114 and x[0, 20, 20, 0] == 255


def test_bad_image_and_spec(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        preprocess(bad, {})
    with pytest.raises(InputError, match="unknown preprocessing keys"):
        preprocess(Image.new("RGB", (4, 4)), {"resise": [2, 2]})
