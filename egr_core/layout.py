"""From per-token scores to grids, blocks and page boxes (the "how tokens map to space" axis).

Coordinates, from the inside out:
- a grid cell (r, c) of a span covers ``span.box`` split into ``rows x cols`` equal cells, and
  ``span.box`` is normalised to the *input image* it belongs to;
- input image ``i`` covers ``source_boxes[i]`` of the page (page view: ``Box.full()``, a crop: the
  crop's page box), so every cell maps to a normalised page box.

A *block* is the map regions are found on: the page view or one crop. The spans of one image that
tile it on a regular lattice (e.g. InternVL tiles) are composed into one canvas; a "global" view
is its own block; "thumbnail" spans are recorded but not used for regions (method.md section 1.6).
NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, RelevanceGrid, TokenLayout

_EPS = 1e-6


def check_token_counts(
    n_positions: int, layout: TokenLayout, model_type: str, what: str = "image placeholders"
) -> None:
    """Raise TokenLayoutMismatchError unless the placeholder count equals the grid cells."""
    if n_positions != layout.n_tokens:
        raise TokenLayoutMismatchError(
            expected=layout.n_tokens, got=n_positions, model_type=model_type, what=what
        )


def scores_to_grids(
    scores: np.ndarray, layout: TokenLayout, source_boxes: Sequence[Box], model_type: str = "?"
) -> tuple[RelevanceGrid, ...]:
    """Cut the per-token scores into one (R, C) grid per span, in raster (row-major) order.

    Args:
        scores: (N,) raw scores of the image tokens, in placeholder order.
        layout: the spans those N tokens form.
        source_boxes: page box of each input image (index = ``span.image_index``).
        model_type: named in the error message.

    Raises:
        TokenLayoutMismatchError: N differs from the layout's grid cells.
    """
    scores = np.asarray(scores, dtype=np.float32).ravel()  # (N,)
    check_token_counts(scores.size, layout, model_type, "scores vs grid cells")
    grids = []
    for span in layout.spans:
        if span.start + span.n_tokens > scores.size:
            raise TokenLayoutMismatchError(
                expected=span.start + span.n_tokens, got=scores.size, model_type=model_type,
                what=f"span of image {span.image_index} ends past the image tokens",
            )  # fmt: skip
        if span.image_index >= len(source_boxes):
            raise ValueError(
                f"span refers to image {span.image_index} but only {len(source_boxes)} images"
            )
        g = scores[span.start : span.start + span.n_tokens].reshape(span.rows, span.cols)  # (R, C)
        grids.append(
            RelevanceGrid(span=span, scores=g.copy(), source_box=source_boxes[span.image_index])
        )
    return tuple(grids)


@dataclass(frozen=True, slots=True)
class Block:
    """A map regions are found on, with the geometry to put its cells back on the page.

    Attributes:
        image_index: input image (0 = page view, 1.. = crops).
        kind: the spans' kind ("view", "tile", "global").
        scores: (R, C) raw scores, tiles composed onto one canvas.
        image_box: the part of the input image the canvas covers (image-normalised).
        source_box: the input image's box on the page.
    """

    image_index: int
    kind: str
    scores: np.ndarray = field(repr=False)
    image_box: Box
    source_box: Box

    def cell_box(self, r0: int, c0: int, r1: int, c1: int) -> Box:
        """Page box of the cells ``[r0..r1] x [c0..c1]`` (inclusive) of this block's canvas."""
        rows, cols = self.scores.shape
        if not (0 <= r0 <= r1 < rows and 0 <= c0 <= c1 < cols):
            raise ValueError(f"cells ({r0},{c0})-({r1},{c1}) outside a {rows}x{cols} grid")
        cells = Box(c0 / cols, r0 / rows, (c1 + 1) / cols, (r1 + 1) / rows)
        return cell_to_page(cells, self.image_box, self.source_box)


def cell_to_page(cells: Box, image_box: Box, source_box: Box) -> Box:
    """Map a box normalised to a grid (cells) -> input image -> page."""
    b = source_box.sub(image_box.sub(cells))
    return Box(max(b.x0, 0.0), max(b.y0, 0.0), min(b.x1, 1.0), min(b.y1, 1.0))


def _lattice(grids: list[RelevanceGrid]) -> Block | None:
    """Compose same-size tiles lying on a regular lattice into one canvas, else None."""
    rows, cols = grids[0].span.rows, grids[0].span.cols
    if any(g.span.rows != rows or g.span.cols != cols for g in grids):
        return None
    xs = sorted({round(g.span.box.x0, 6) for g in grids})
    ys = sorted({round(g.span.box.y0, 6) for g in grids})
    if len(xs) * len(ys) != len(grids):
        return None
    w, h = grids[0].span.box.width, grids[0].span.box.height
    canvas = np.zeros((len(ys) * rows, len(xs) * cols), dtype=np.float32)  # (R_total, C_total)
    seen = set()
    for g in grids:
        b = g.span.box
        if abs(b.width - w) > _EPS or abs(b.height - h) > _EPS:
            return None
        i, j = ys.index(round(b.y0, 6)), xs.index(round(b.x0, 6))
        if (i, j) in seen or (j and abs(xs[j] - xs[j - 1] - w) > 1e-4):
            return None
        if i and abs(ys[i] - ys[i - 1] - h) > 1e-4:
            return None
        seen.add((i, j))
        canvas[i * rows : (i + 1) * rows, j * cols : (j + 1) * cols] = g.scores
    x1 = min(xs[-1] + w, 1.0)
    y1 = min(ys[-1] + h, 1.0)
    first = grids[0]
    return Block(
        first.span.image_index, first.span.kind, canvas, Box(xs[0], ys[0], x1, y1), first.source_box
    )


def blocks(grids: Sequence[RelevanceGrid]) -> list[Block]:
    """Group the grids into blocks: per input image, lattice tiles composed, globals separate.

    Returns:
        Blocks ordered by image index (page view first); thumbnails are left out.
    """
    groups: dict[tuple[int, str], list[RelevanceGrid]] = {}
    for g in grids:
        if g.span.kind == "thumbnail":
            continue
        kind = "tile" if g.span.kind in ("view", "tile") else g.span.kind
        groups.setdefault((g.span.image_index, kind), []).append(g)
    out: list[Block] = []
    for (_, _kind), members in sorted(groups.items()):
        composed = _lattice(members) if len(members) > 1 else None
        if composed is not None:
            out.append(composed)
            continue
        out.extend(
            Block(g.span.image_index, g.span.kind, g.scores, g.span.box, g.source_box)
            for g in members
        )
    return out
