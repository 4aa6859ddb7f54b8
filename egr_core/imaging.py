"""Pure PIL helpers: crop boxes, pixel maths between page space and crop space, raster crops."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PIL import Image

from egr_core.types import Box, Region

if TYPE_CHECKING:
    from egr_core.config import EgrConfig

#: Given a normalised page box and a target long-side size in pixels, return the crop image.
CropFn = Callable[[Box, int], Image.Image]

#: A crop is never more elongated than this (long / short side, in page pixels), so that its short
#: side survives the processor's minimum size.
MAX_CROP_ASPECT = 4.0


def box_to_pixels(box: Box, width_px: int, height_px: int) -> tuple[int, int, int, int]:
    """Integer pixel rectangle (left, top, right, bottom) covering ``box``; at least 1 px wide."""
    x0 = max(0, min(width_px - 1, int(box.x0 * width_px)))
    y0 = max(0, min(height_px - 1, int(box.y0 * height_px)))
    x1 = max(x0 + 1, min(width_px, round(box.x1 * width_px + 0.4999)))
    y1 = max(y0 + 1, min(height_px, round(box.y1 * height_px + 0.4999)))
    return x0, y0, x1, y1


def _grow(lo: float, hi: float, size: float) -> tuple[float, float]:
    """Grow [lo, hi] symmetrically to ``size`` (<= 1), shifted back inside [0, 1]."""
    size = min(size, 1.0)
    if hi - lo >= size:
        return lo, hi
    mid = (lo + hi) / 2
    lo, hi = mid - size / 2, mid + size / 2
    if lo < 0:
        lo, hi = 0.0, size
    if hi > 1:
        lo, hi = 1.0 - size, 1.0
    return max(lo, 0.0), min(hi, 1.0)


def crop_box(
    region: Box,
    *,
    pad: float,
    min_side: float,
    page_aspect: float = 1.0,
    max_aspect: float = MAX_CROP_ASPECT,
) -> Box:
    """The page box to crop for a region: padded, at least ``min_side``, not too elongated.

    Args:
        region: the region's normalised page box.
        pad: padding on each side, as a fraction of the region's width / height.
        min_side: smallest crop side as a fraction of the page side.
        page_aspect: page width / height in pixels (or points), for the elongation limit.
        max_aspect: largest long/short side ratio of the crop in page pixels.
    """
    x0, x1 = region.x0 - pad * region.width, region.x1 + pad * region.width
    y0, y1 = region.y0 - pad * region.height, region.y1 + pad * region.height
    x0, x1 = max(x0, 0.0), min(x1, 1.0)
    y0, y1 = max(y0, 0.0), min(y1, 1.0)
    x0, x1 = _grow(x0, x1, min_side)
    y0, y1 = _grow(y0, y1, min_side)
    w_px, h_px = (x1 - x0) * page_aspect, (y1 - y0)  # in units of the page height
    if w_px > max_aspect * h_px:
        y0, y1 = _grow(y0, y1, w_px / max_aspect)
    elif h_px > max_aspect * w_px:
        x0, x1 = _grow(x0, x1, h_px / max_aspect / page_aspect)
    return Box(x0, y0, x1, y1)


def legible_crops(
    region: Box,
    peak: tuple[float, float] | None,
    page_pt: tuple[float, float],
    *,
    scale: float,
    max_long_px: int,
    window_pt: float,
    pad: float,
    max_crops: int,
) -> tuple[Box, ...]:
    """The crops that show ``region`` at the model's legible scale (method.md section 3).

    A crop is a window at most ``max_long_px / scale`` points wide and ``window_pt`` points tall,
    so rendered at ``scale`` px per point it fits the crop budget. The first window is centred on
    the map's ``peak`` (the region's centre when there is no peak). A padded region wider than one
    window also gets windows over the rest of its width, side by side, nearest to the peak first
    (at most ``max_crops`` in all), never one window too coarse to read. Windows stay inside the
    page.

    Args:
        region: the region's normalised page box.
        peak: normalised (x, y) of the map's maximum inside the region, or None.
        page_pt: the page's (width, height) in points.
        scale: the model's legible scale, pixels per point.
        max_long_px: the longest crop side in pixels (``EgrConfig.crop_pixels``).
        window_pt: the window's height in points.
        pad: padding on each side of the region in x, as a fraction of its width.
        max_crops: most windows for one region.
    """
    w_pt, h_pt = page_pt
    win_w = min(max_long_px / scale / w_pt, 1.0)  # normalised window size
    win_h = min(window_pt / h_pt, max_long_px / scale / h_pt, 1.0)
    x0 = max(region.x0 - pad * region.width, 0.0)
    x1 = min(region.x1 + pad * region.width, 1.0)
    cx, cy = peak if peak is not None else ((x0 + x1) / 2, (region.y0 + region.y1) / 2)
    y0, y1 = _grow(cy - 1e-9, cy + 1e-9, win_h)

    def window(x: float) -> Box:
        a, b = _grow(x - 1e-9, x + 1e-9, win_w)
        return Box(a, y0, b, y1)

    first = window(cx)
    extra: list[Box] = []  # the rest of a wide region: windows side by side out from the first
    left, right = first.x0, first.x1
    while left > x0 + 1e-9 and len(extra) < 8:
        extra.append(window(max(left - win_w / 2, win_w / 2)))
        left -= win_w
    while right < x1 - 1e-9 and len(extra) < 16:
        extra.append(window(min(right + win_w / 2, 1.0 - win_w / 2)))
        right += win_w
    extra.sort(key=lambda t: abs((t.x0 + t.x1) / 2 - cx))  # nearest to the peak first
    return tuple(dict.fromkeys([first, *extra]))[: max(1, max_crops)]


def region_crops(
    region: Box,
    peak: tuple[float, float] | None,
    config: EgrConfig,
    page_pt: tuple[float, float],
    page_aspect: float,
    *,
    max_windows: int,
) -> tuple[Box, ...]:
    """The crops EGG cuts for one region under ``config``: legible windows
    (:func:`legible_crops`) when ``legible_scale`` is set, else the paper's padded region
    (:func:`crop_box`; ``page_aspect`` = page width / height)."""
    if config.legible_scale is None:
        return (
            crop_box(
                region, pad=config.crop_pad, min_side=config.min_crop, page_aspect=page_aspect
            ),
        )
    return legible_crops(
        region, peak, page_pt, scale=config.legible_scale, max_long_px=config.crop_pixels,
        window_pt=config.crop_window_pt, pad=config.crop_pad, max_crops=max_windows,
    )  # fmt: skip


def crops_of_regions(
    regions: Sequence[Region],
    config: EgrConfig,
    page_pt: tuple[float, float],
    page_aspect: float,
) -> dict[Box, Region]:
    """Every region's crops under ``config`` (:func:`region_crops`, ``config.max_windows``), in
    rank order, each with the region it was cut for; an exact duplicate keeps the first."""
    out: dict[Box, Region] = {}
    for r in regions:
        for b in region_crops(
            r.box, r.peak, config, page_pt, page_aspect, max_windows=config.max_windows
        ):
            out.setdefault(b, r)
    return out


def target_size(box: Box, page_size: tuple[int, int], long_side_px: int) -> tuple[int, int]:
    """(width, height) in pixels of a crop of ``box`` whose long side is ``long_side_px``."""
    w = box.width * page_size[0]
    h = box.height * page_size[1]
    scale = long_side_px / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def crop_long_side(box: Box, page_size: tuple[float, float], config: EgrConfig) -> int:
    """Long side in pixels to render the crop of ``box`` (normalised) of a ``page_size`` page.

    With ``legible_scale`` set, ``page_size`` is in points and the crop renders at that many
    pixels per point (capped at ``crop_pixels``). Otherwise ``crop_pixels``, or with
    ``crop_page_side`` set, the fixed scale at which the page's long side would be
    ``crop_page_side`` pixels (capped at ``crop_pixels``; at least one 28 px token).
    """
    w, h = page_size
    if config.legible_scale is not None:
        long_pt = max(box.width * w, box.height * h)
        return max(28, min(int(config.crop_pixels), round(long_pt * config.legible_scale)))
    if config.crop_page_side is None:
        return int(config.crop_pixels)
    long_fraction = max(box.width * w, box.height * h) / max(w, h)
    return max(28, min(int(config.crop_pixels), round(config.crop_page_side * long_fraction)))


def raster_crop_fn(page_image: Image.Image) -> CropFn:
    """A CropFn cutting pixels out of one page raster (fallback when no PDF is at hand).

    The crop is resampled (bicubic) so that its long side is the requested size; zooming past the
    raster's resolution only interpolates (the documents layer re-renders losslessly instead).
    """
    page = page_image.convert("RGB")

    def crop(box: Box, long_side_px: int) -> Image.Image:
        rect = box_to_pixels(box, page.width, page.height)
        size = target_size(box, page.size, long_side_px)
        return page.crop(rect).resize(size, Image.Resampling.BICUBIC)

    return crop


def image_key(image: Image.Image) -> str:
    """A stable key for identical pixels (mode, size and sha1 of the bytes); for encode caches."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()
