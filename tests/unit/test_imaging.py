"""Crop boxes and the raster crop fallback."""

from __future__ import annotations

import pytest
from PIL import Image

from egr_core.config import EgrConfig
from egr_core.imaging import (
    box_to_pixels,
    crop_box,
    crop_long_side,
    image_key,
    legible_crops,
    raster_crop_fn,
    target_size,
)
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


# ---------------------------------------------------------------- legible windows


def _pt(b: Box, page: tuple[float, float]) -> tuple[float, float, float, float]:
    return (b.x0 * page[0], b.y0 * page[1], b.x1 * page[0], b.y1 * page[1])


def test_legible_window_is_centred_on_the_peak_and_fits_the_budget() -> None:
    page = (612.0, 792.0)
    region = Box(0.5, 0.2, 0.6, 0.25)  # 61 x 40 pt: narrower than one window
    (w,) = legible_crops(
        region, (0.55, 0.22), page, scale=5.0, max_long_px=616, window_pt=72.0, pad=0.1,
        max_crops=3,
    )  # fmt: skip
    x0, y0, x1, y1 = _pt(w, page)
    assert x1 - x0 == pytest.approx(616 / 5.0) and y1 - y0 == pytest.approx(72.0)
    assert (x0 + x1) / 2 == pytest.approx(0.55 * 612) and (y0 + y1) / 2 == pytest.approx(0.22 * 792)
    assert crop_long_side(w, page, EgrConfig(legible_scale=5.0, crop_pixels=616)) == 616


def test_a_region_wider_than_a_window_gets_several_windows_peak_first() -> None:
    page = (612.0, 792.0)
    region = Box(0.1, 0.5, 0.9, 0.55)  # 490 pt wide: four windows at least
    wins = legible_crops(
        region, (0.7, 0.52), page, scale=5.0, max_long_px=616, window_pt=72.0, pad=0.0,
        max_crops=8,
    )  # fmt: skip
    assert 4 <= len(wins) <= 5
    assert wins[0].x0 < 0.7 < wins[0].x1  # the peak's window comes first
    covered = min(w.x0 for w in wins), max(w.x1 for w in wins)
    assert covered[0] <= 0.1 + 1e-6 and covered[1] >= 0.9 - 1e-6  # the whole region is shown
    assert all(w.width * 612 == pytest.approx(616 / 5.0) for w in wins)  # none coarser
    (one,) = legible_crops(
        region, (0.7, 0.52), page, scale=5.0, max_long_px=616, window_pt=72.0, pad=0.0,
        max_crops=1,
    )  # fmt: skip
    assert one == wins[0]
    two = legible_crops(
        region, (0.7, 0.52), page, scale=5.0, max_long_px=616, window_pt=72.0, pad=0.0,
        max_crops=2,
    )  # fmt: skip
    assert two == wins[:2] and abs((two[1].x0 + two[1].x1) / 2 - 0.7) < 0.21


def test_windows_stay_on_the_page() -> None:
    page = (595.0, 842.0)
    for peak in ((0.0, 0.0), (1.0, 1.0), (0.02, 0.99)):
        for w in legible_crops(
            Box(0.0, 0.0, 1.0, 0.05), peak, page, scale=4.0, max_long_px=448, window_pt=60.0,
            pad=0.1, max_crops=3,
        ):  # fmt: skip
            assert 0.0 <= w.x0 < w.x1 <= 1.0 and 0.0 <= w.y0 < w.y1 <= 1.0
            assert w.width * 595 == pytest.approx(448 / 4.0)
