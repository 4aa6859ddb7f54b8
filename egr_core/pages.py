"""The page model: document limits, page geometry (points, pixels, PDF user space), a rendered
page, the words of a text layer, and the text under a box in reading order.

Coordinates are :mod:`egr_core.documents`'s displayed page points (top-left origin, y down).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from PIL import Image

from egr_core.types import Box

#: How much of a word (points, along each axis) a box must cover for the word to be "under" it.
TEXT_TOLERANCE_PT = 1.0


@dataclass(frozen=True, slots=True)
class DocLimits:
    """Hard limits checked before work is done. Exceeding one raises :class:`TooLargeError`.

    Attributes:
        max_bytes: Largest accepted file size.
        max_pages: Largest accepted page count.
        max_render_pixels: Largest pixmap (width * height) any single render may allocate.
        max_render_side: Largest pixmap side in pixels.
    """

    max_bytes: int = 512 * 1024 * 1024
    max_pages: int = 10_000
    max_render_pixels: int = 50_000_000
    max_render_side: int = 30_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pages", "max_render_pixels", "max_render_side"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DocLimits.{name} must be positive, got {getattr(self, name)}")


Affine = tuple[float, float, float, float, float, float]  # (a, b, c, d, e, f) as in PDF `cm`


@dataclass(frozen=True, slots=True)
class PageGeometry:
    """Size and coordinate frames of one page.

    Attributes:
        index: 0-based page index.
        width_pt, height_pt: Displayed page size (after /Rotate, CropBox applied), in points.
        rotation: /Rotate normalised to 0, 90, 180 or 270.
        mediabox: The MediaBox in PDF user space ``(x0, y0, x1, y1)``, y up, as in the file.
        cropbox: The effective CropBox (clipped to the MediaBox) in PDF user space.
        pdf_to_page: Affine map PDF user space -> displayed page points (origin top-left).
    """

    index: int
    width_pt: float
    height_pt: float
    rotation: int
    mediabox: tuple[float, float, float, float]
    cropbox: tuple[float, float, float, float]
    pdf_to_page: Affine = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not (self.width_pt > 0 and self.height_pt > 0) or not math.isfinite(
            self.width_pt * self.height_pt
        ):
            raise ValueError(
                f"page {self.index}: degenerate size {self.width_pt} x {self.height_pt} pt"
            )
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"page {self.index}: rotation must be 0/90/180/270: {self.rotation}")

    # -- normalised <-> points --------------------------------------------------------------
    def box_to_points(self, box: Box) -> tuple[float, float, float, float]:
        """A normalised box -> ``(x0, y0, x1, y1)`` in displayed page points, origin top-left."""
        w, h = self.width_pt, self.height_pt
        return (box.x0 * w, box.y0 * h, box.x1 * w, box.y1 * h)

    def points_to_box(self, x0: float, y0: float, x1: float, y1: float) -> Box:
        """Displayed page points -> normalised box, clamped to the page.

        Raises:
            ValueError: The rectangle is empty after clamping (it lies outside the page).
        """
        w, h = self.width_pt, self.height_pt
        nx0, nx1 = sorted((min(max(x0 / w, 0.0), 1.0), min(max(x1 / w, 0.0), 1.0)))
        ny0, ny1 = sorted((min(max(y0 / h, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0)))
        if not (nx0 < nx1 and ny0 < ny1):
            raise ValueError(
                f"page {self.index}: rectangle ({x0}, {y0}, {x1}, {y1}) pt has no area inside "
                f"the {w} x {h} pt page"
            )
        return Box(nx0, ny0, nx1, ny1)

    # -- points <-> pixels ------------------------------------------------------------------
    @staticmethod
    def pt_to_px(x: float, y: float, dpi: float) -> tuple[float, float]:
        """Displayed page point -> pixel coordinate of a render at ``dpi`` (continuous)."""
        s = dpi / 72.0
        return (x * s, y * s)

    @staticmethod
    def px_to_pt(x: float, y: float, dpi: float) -> tuple[float, float]:
        """Pixel coordinate of a render at ``dpi`` -> displayed page point (inverse of above)."""
        s = 72.0 / dpi
        return (x * s, y * s)

    # -- PDF user space <-> points ----------------------------------------------------------
    def pdf_to_points(self, x: float, y: float) -> tuple[float, float]:
        """PDF user-space coordinate (as in the content stream) -> displayed page point."""
        a, b, c, d, e, f = self.pdf_to_page
        return (a * x + c * y + e, b * x + d * y + f)

    def points_to_pdf(self, x: float, y: float) -> tuple[float, float]:
        """Displayed page point -> PDF user-space coordinate."""
        a, b, c, d, e, f = self.pdf_to_page
        det = a * d - b * c
        u, v = x - e, y - f
        return ((d * u - c * v) / det, (a * v - b * u) / det)


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """One page raster. ``image`` is RGB, ``width_px x height_px``, pixel = point * dpi / 72."""

    index: int
    image: Image.Image = field(repr=False)
    dpi: float
    width_px: int
    height_px: int
    geometry: PageGeometry

    def pt_to_px(self, x: float, y: float) -> tuple[float, float]:
        return self.geometry.pt_to_px(x, y, self.dpi)

    def px_to_pt(self, x: float, y: float) -> tuple[float, float]:
        return self.geometry.px_to_pt(x, y, self.dpi)


@dataclass(frozen=True, slots=True)
class Word:
    """A word of the text layer; ``rect_pt`` in displayed page points (origin top-left)."""

    text: str
    rect_pt: tuple[float, float, float, float]
    block: int
    line: int


def text_in_box(
    words: Iterable[Word], geom: PageGeometry, box: Box, *, tol_pt: float = TEXT_TOLERANCE_PT
) -> str:
    """Text of the ``words`` (of a page with geometry ``geom``) that overlap ``box``, in reading
    order, single spaces.


            A word counts when the box covers more than ``tol_pt`` points of it along both axes (or
            more than half of it along an axis where the word is narrower than ``2 * tol_pt``): a
            box over part of a value reads the whole value, a box that grazes the next line by a
            point does not read that line.

            Reading order: the dominant text direction of the selected lines defines a reading frame
            (so rotated pages and vertical text read along their lines); in that frame MuPDF's text
            blocks are ordered top-to-bottom then left-to-right, lines within a block top-to-bottom
            and words within a line along the line.
    """
    bx0, by0, bx1, by1 = geom.box_to_points(box)
    lines: dict[tuple[int, int], list[Word]] = {}
    for w in words:
        wx0, wy0, wx1, wy1 = w.rect_pt
        need_x = min(tol_pt, (wx1 - wx0) / 2)
        need_y = min(tol_pt, (wy1 - wy0) / 2)
        if min(bx1, wx1) - max(bx0, wx0) > need_x and min(by1, wy1) - max(by0, wy0) > need_y:
            lines.setdefault((w.block, w.line), []).append(w)
    if not lines:
        return ""
    default = {0: (1.0, 0.0), 90: (0.0, 1.0), 180: (-1.0, 0.0), 270: (0.0, -1.0)}
    dx, dy = _reading_direction(lines.values(), default[geom.rotation])
    nx, ny = -dy, dx  # next-line direction: the line direction turned 90 degrees clockwise

    def frame(w: Word) -> tuple[float, float]:  # (along the line, across lines)
        cx, cy = (w.rect_pt[0] + w.rect_pt[2]) / 2, (w.rect_pt[1] + w.rect_pt[3]) / 2
        return (cx * dx + cy * dy, cx * nx + cy * ny)

    blocks: dict[int, list[list[Word]]] = {}
    for (block, _), ws in lines.items():
        blocks.setdefault(block, []).append(sorted(ws, key=lambda w: frame(w)[0]))

    def line_key(ws: list[Word]) -> tuple[float, float]:
        pts = [frame(w) for w in ws]
        return (sum(p[1] for p in pts) / len(pts), min(p[0] for p in pts))

    def block_key(ls: list[list[Word]]) -> tuple[float, float]:
        pts = [frame(w) for ws in ls for w in ws]
        return (min(p[1] for p in pts), min(p[0] for p in pts))

    ordered = sorted(blocks.values(), key=block_key)
    texts = [w.text for ls in ordered for ws in sorted(ls, key=line_key) for w in ws]
    return " ".join(" ".join(texts).split())


def _reading_direction(
    lines: Iterable[list[Word]], default: tuple[float, float]
) -> tuple[float, float]:
    """Dominant line direction (axis unit vector, displayed frame), voted by multi-word lines.

    ``default`` (upright text of the unrotated page, turned by /Rotate) applies when no line has
    two words.
    """
    votes: dict[tuple[float, float], int] = {}
    for ws in lines:
        if len(ws) < 2:
            continue
        (a, b) = ws[0], ws[-1]
        vx = (b.rect_pt[0] + b.rect_pt[2] - a.rect_pt[0] - a.rect_pt[2]) / 2
        vy = (b.rect_pt[1] + b.rect_pt[3] - a.rect_pt[1] - a.rect_pt[3]) / 2
        if abs(vx) >= abs(vy):
            axis = (1.0, 0.0) if vx >= 0 else (-1.0, 0.0)
        else:
            axis = (0.0, 1.0) if vy >= 0 else (0.0, -1.0)
        votes[axis] = votes.get(axis, 0) + len(ws)
    return max(votes, key=lambda k: votes[k]) if votes else default


def fit_render(
    width_pt: float, height_pt: float, max_pixels: int, max_side: int, max_dpi: float | None = None
) -> tuple[float, int, int]:
    """(zoom, width_px, height_px) of the largest render of a ``width_pt x height_pt`` page whose
    size, ``round(width_pt * zoom) x round(height_pt * zoom)``, has at most ``max_pixels``
    pixels and ``max_side`` per side (and at most ``max_dpi``); zoom = dpi / 72."""
    if max_pixels <= 0 or max_side <= 0:
        raise ValueError(f"max_pixels and max_side must be positive: {max_pixels}, {max_side}")
    zoom = min(math.sqrt(max_pixels / (width_pt * height_pt)), max_side / max(width_pt, height_pt))
    if max_dpi is not None:
        zoom = min(zoom, max_dpi / 72.0)
    for _ in range(64):  # rounding may overshoot the budget by a pixel; shrink until it fits
        w, h = max(1, round(width_pt * zoom)), max(1, round(height_pt * zoom))
        if w * h <= max_pixels and max(w, h) <= max_side:
            break
        zoom *= 0.999
    return zoom, w, h
