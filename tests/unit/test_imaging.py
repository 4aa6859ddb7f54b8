"""Crop boxes and the raster crop fallback."""

from __future__ import annotations

import pytest
from PIL import Image

from egr_core.imaging import box_to_pixels, crop_box, image_key, raster_crop_fn, target_size
from egr_core.types import Box


def test_crop_box_pads_and_clamps() -> None:
    b = crop_box(Box(0.2, 0.2, 0.4, 0.6), pad=0.1, min_side=0.05)
    assert b.as_tuple() == pytest.approx((0.18, 0.16, 0.42, 0.64))
    edge = crop_box(Box(0.0, 0.9, 0.2, 1.0), pad=0.5, min_side=0.05)
    assert edge.as_tuple() == pytest.approx((0.0, 0.85, 0.3, 1.0))


def test_crop_box_min_side_and_aspect_limit() -> None:
    tiny = crop_box(Box(0.5, 0.5, 0.51, 0.51), pad=0.0, min_side=0.1)
    assert tiny.width == pytest.approx(0.1) and tiny.height == pytest.approx(0.1)
    line = crop_box(Box(0.1, 0.5, 0.9, 0.52), pad=0.0, min_side=0.01, max_aspect=4.0)
    assert line.width / line.height == pytest.approx(4.0)
    # on a page twice as wide as tall, a box 0.1 wide x 0.8 tall is 0.2 : 0.8 in pixels
    tall = crop_box(Box(0.5, 0.1, 0.6, 0.9), pad=0.0, min_side=0.01, page_aspect=2.0)
    assert tall.width * 2.0 == pytest.approx(tall.height / 4.0)
    assert tall.width == pytest.approx(0.1)  # already at the limit: unchanged


def test_raster_crop_fn_sizes_and_content() -> None:
    page = Image.new("RGB", (200, 100), "white")
    page.paste((255, 0, 0), (100, 0, 200, 50))  # top-right quarter is red
    crop = raster_crop_fn(page)(Box(0.5, 0.0, 1.0, 0.5), 64)
    assert crop.size == (64, 32)
    assert crop.getpixel((32, 16)) == (255, 0, 0)
    assert target_size(Box(0.0, 0.0, 0.5, 1.0), (200, 100), 50) == (50, 50)
    assert box_to_pixels(Box(0.5, 0.0, 1.0, 0.5), 200, 100) == (100, 0, 200, 50)


def test_image_key_is_stable_for_identical_pixels() -> None:
    a = Image.new("RGB", (8, 8), "white")
    b = Image.new("RGB", (8, 8), "white")
    assert image_key(a) == image_key(b)
    b.putpixel((0, 0), (0, 0, 0))
    assert image_key(a) != image_key(b)
