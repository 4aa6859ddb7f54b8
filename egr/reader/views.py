"""What the reader is shown, rendered from a synthetic PDF: the page view (at most the reader's
token budget), crops cut and scaled the way EGG cuts them (legible windows with scale and window
jitter, off-centre values), and each crop's per-slot character labels and answer-character
cells.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pymupdf
from PIL import Image

from egr.synth import SynthDocument, TextSpan
from egr_core.imaging import legible_crops
from egr_core.types import Box

from .model import MAX_TOKENS_PER_IMAGE, TOKEN_PX

#: Pixels rendered per page-view token before the processor downsizes (as the pipeline does).
PAGE_OVERSAMPLE = 1.5


def render_rect(
    pdf: Any, page: int, rect: tuple[float, float, float, float], zoom: float
) -> Image.Image:
    """Render a page rectangle (points, origin top-left) at ``zoom`` px/pt as RGB."""
    pix = pdf[page].get_pixmap(
        matrix=pymupdf.Matrix(zoom, zoom), clip=pymupdf.Rect(*rect), alpha=False
    )
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def page_view(pdf: Any, page: int) -> Image.Image:
    """The page rendered a little above the reader's pixel budget (the processor downsizes)."""
    r = pdf[page].rect
    budget = MAX_TOKENS_PER_IMAGE * TOKEN_PX * TOKEN_PX * PAGE_OVERSAMPLE**2
    zoom = math.sqrt(budget / (r.width * r.height))
    return render_rect(pdf, page, (0, 0, r.width, r.height), zoom)


def fit_tokens(img: Image.Image) -> Image.Image:
    """``img`` resized to whole merged tokens within the reader's budget, as the processor would.

    Doing it here keeps every training image's token grid known (slot labels, copy targets).
    """
    cols, rows = max(1, round(img.width / TOKEN_PX)), max(1, round(img.height / TOKEN_PX))
    if cols * rows > MAX_TOKENS_PER_IMAGE:
        s = math.sqrt(MAX_TOKENS_PER_IMAGE / (cols * rows))
        cols, rows = max(1, math.floor(cols * s)), max(1, math.floor(rows * s))
    return img.resize((cols * TOKEN_PX, rows * TOKEN_PX))


#: Crop geometry of recipe 2 (fixed with the recipe, whatever EGG knobs the checkpoint ships):
#: the legible scale (px/pt), the longest crop side (px) and the region's padding across.
LEGIBLE_SCALE, CROP_PX, CROP_PAD = 5.0, 616, 0.1
#: Training crops render at the legible scale times a factor in this range (scale jitter).
SCALE_JITTER = (0.85, 1.2)
#: Window heights (points) of training crops, around the reader's ``crop_window_pt``.
WINDOW_JITTER = (56.0, 84.0)
#: The simulated map peak's error around a value's centre (sd across, down; points) of recipe 2.
PEAK_SD = (10.0, 6.0)


def egg_crop_rect(
    rng: random.Random,
    doc: SynthDocument,
    span: TextSpan,
    peak_sd: tuple[float, float] = PEAK_SD,
    whole_value: bool = False,
) -> tuple[tuple[float, float, float, float], float]:
    """A crop rectangle (points) and its scale (px/pt), cut the way EGG cuts the reader's crops.

    EGG's page-view region around a value is a blob of a few ~40 pt cells, often reaching over
    the label or a neighbouring line; its peak lies near the value. Here the region is the value's
    box grown by 0-40 pt across and 0-30 pt down, the peak the value's centre moved by a few
    points, and the crop comes from EGG's own rule (:func:`egr_core.imaging.legible_crops`, the
    window holding most of the value), at the reader's legible scale times a jitter factor. So
    values sit off-centre, with neighbouring text in the crop.

    ``peak_sd`` is the peak's error (standard deviation across and down, points). With
    ``whole_value`` the peak is pulled back where needed so the window holds the whole value
    (a crop whose answer is cut off teaches guessing); it draws nothing more from ``rng``.
    """
    w, h = doc.page_sizes_pt[span.page]
    x0, y0, x1, y1 = span.box_pt
    gx = (rng.uniform(0, 40), rng.uniform(0, 40))
    gy = (rng.uniform(0, 30), rng.uniform(0, 30))
    region = Box(
        max((x0 - gx[0]) / w, 0.0), max((y0 - gy[0]) / h, 0.0),
        min((x1 + gx[1]) / w, 1.0), min((y1 + gy[1]) / h, 1.0),
    )  # fmt: skip
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    px, py = cx + rng.gauss(0, peak_sd[0]), cy + rng.gauss(0, peak_sd[1])
    scale = LEGIBLE_SCALE * rng.uniform(*SCALE_JITTER)
    window = rng.uniform(*WINDOW_JITTER)
    if whole_value:  # the window centred on the peak must hold the value (1 pt to spare)
        reach_x = max((CROP_PX / scale - (x1 - x0)) / 2 - 1.0, 0.0)
        reach_y = max((window - (y1 - y0)) / 2 - 1.0, 0.0)
        px, py = cx + _clamp(px - cx, reach_x), cy + _clamp(py - cy, reach_y)
    crops = legible_crops(
        region, (px / w, py / h), (w, h), scale=scale, max_long_px=CROP_PX,
        window_pt=window, pad=CROP_PAD, max_crops=3,
    )  # fmt: skip

    def overlap(b: Box) -> float:
        return max(0.0, min(b.x1 * w, x1) - max(b.x0 * w, x0))

    best = max(crops, key=overlap)
    return (best.x0 * w, best.y0 * h, best.x1 * w, best.y1 * h), scale


def _clamp(v: float, reach: float) -> float:
    return max(-reach, min(v, reach))


def render_crop(
    pdf: Any, page: int, rect: tuple[float, float, float, float], scale: float
) -> Image.Image:
    """``rect`` rendered at ``scale`` px/pt, as EGG renders the reader's crops, in whole tokens
    (at most the reader's token budget: an over-budget window is scaled down a little)."""
    return fit_tokens(render_rect(pdf, page, rect, scale))


#: Label of a slot that shows no character centre but part of one (not supervised).
IGNORE = "\x00"


def slot_labels(
    doc: SynthDocument, page: int, rect: tuple[float, float, float, float], image: Image.Image
) -> str:
    """What each half-token column shows: ``2 * rows * cols`` characters, row-major.

    A merged token is 2x2 patches; its left and right patch columns are its two *slots*. A slot's
    label is the Courier character whose centre lies in it (on the token row holding the text
    line's centre), a space where no text is drawn, and :data:`IGNORE` elsewhere (other rows of a
    line, glyph parts without a centre, non-monospace text).
    """
    cols, rows = image.width // TOKEN_PX, image.height // TOKEN_PX
    half = TOKEN_PX // 2
    sx, sy = image.width / (rect[2] - rect[0]), image.height / (rect[3] - rect[1])
    grid = [[" "] * (2 * cols) for _ in range(rows)]
    inside = [
        s for s in doc.spans
        if s.page == page and s.box_pt[2] > rect[0] and s.box_pt[0] < rect[2]
        and s.box_pt[3] > rect[1] and s.box_pt[1] < rect[3]
    ]  # fmt: skip
    for s in inside:  # everything under any text: not supervised unless labelled below
        r0, r1 = (s.box_pt[1] - rect[1]) * sy / TOKEN_PX, (s.box_pt[3] - rect[1]) * sy / TOKEN_PX
        c0, c1 = (s.box_pt[0] - rect[0]) * sx / half, (s.box_pt[2] - rect[0]) * sx / half
        for r in range(max(0, math.floor(r0)), min(rows, math.ceil(r1))):
            for c in range(max(0, math.floor(c0)), min(2 * cols, math.ceil(c1))):
                grid[r][c] = IGNORE
    for s in inside:
        if not s.monospace:
            continue
        row = math.floor(((s.box_pt[1] + s.box_pt[3]) / 2 - rect[1]) * sy / TOKEN_PX)
        if not 0 <= row < rows:
            continue
        pitch = 0.6 * s.size_pt
        for k, ch in enumerate(s.text):
            c = math.floor((s.box_pt[0] + (k + 0.5) * pitch - rect[0]) * sx / half)
            if 0 <= c < 2 * cols:
                grid[row][c] = ch
    return "".join("".join(r) for r in grid)


def char_cells(
    span: TextSpan, rect: tuple[float, float, float, float], image: Image.Image
) -> tuple[int, ...] | None:
    """Merged-token index of each character centre of ``span`` in ``image`` (a render of ``rect``).

    None unless every character centre falls inside the image. Two characters may share a token
    when the pitch is under a token.
    """
    cols, rows = image.width // TOKEN_PX, image.height // TOKEN_PX
    sx, sy = image.width / (rect[2] - rect[0]), image.height / (rect[3] - rect[1])
    pitch = 0.6 * span.size_pt
    yc = (span.box_pt[1] + span.box_pt[3]) / 2
    row = math.floor((yc - rect[1]) * sy / TOKEN_PX)
    out = []
    for k in range(len(span.text)):
        col = math.floor((span.box_pt[0] + (k + 0.5) * pitch - rect[0]) * sx / TOKEN_PX)
        if not (0 <= col < cols and 0 <= row < rows):
            return None
        out.append(row * cols + col)
    return tuple(out)
