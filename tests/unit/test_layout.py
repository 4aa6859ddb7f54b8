"""Scores -> grids (row-major), grid cells -> page boxes, tile composition, count checks."""

from __future__ import annotations

import numpy as np
import pytest

from egr_core import layout
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout


def test_scores_to_grids_row_major_per_span() -> None:
    lay = TokenLayout((GridSpan(0, 2, 3, Box.full(), 0), GridSpan(6, 1, 2, Box.full(), 1)))
    crop = Box(0.5, 0.5, 1.0, 1.0)
    grids = layout.scores_to_grids(np.arange(8.0), lay, (Box.full(), crop))
    np.testing.assert_array_equal(grids[0].scores, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(grids[1].scores, [[6, 7]])
    assert grids[1].source_box == crop


def test_mismatch_error_names_both_numbers() -> None:
    lay = TokenLayout((GridSpan(0, 4, 4, Box.full()),))
    with pytest.raises(TokenLayoutMismatchError) as e:
        layout.scores_to_grids(np.zeros(15), lay, (Box.full(),), "toy")
    assert "15" in str(e.value) and "16" in str(e.value) and "toy" in str(e.value)
    assert (e.value.expected, e.value.got) == (16, 15)


def test_cell_box_maps_through_span_box_and_source_box() -> None:
    # span covers the left half of a crop; the crop is the page's top-right quarter
    lay = TokenLayout((GridSpan(0, 2, 2, Box(0.0, 0.0, 0.5, 1.0), 0),))
    source = Box(0.5, 0.0, 1.0, 0.5)
    (block,) = layout.blocks(layout.scores_to_grids(np.ones(4), lay, (source,)))
    box = block.cell_box(1, 1, 1, 1)  # bottom-right cell
    # cell -> span box: x [0.25, 0.5] y [0.5, 1] of the crop -> page: x 0.5 + [0.125, 0.25]
    assert box.as_tuple() == pytest.approx((0.625, 0.25, 0.75, 0.5))


def test_tiles_on_a_lattice_compose_into_one_canvas_and_thumbnail_is_left_out() -> None:
    spans = []
    for i, (x, y) in enumerate([(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)]):
        spans.append(GridSpan(4 * i, 2, 2, Box(x, y, x + 0.5, y + 0.5), 0, "tile"))
    spans.append(GridSpan(16, 2, 2, Box.full(), 0, "thumbnail"))
    scores = np.zeros(20)
    scores[4 * 3 + 3] = 1.0  # bottom-right cell of the bottom-right tile
    (block,) = layout.blocks(
        layout.scores_to_grids(scores, TokenLayout(tuple(spans)), [Box.full()])
    )
    assert block.scores.shape == (4, 4)
    assert np.unravel_index(np.argmax(block.scores), (4, 4)) == (3, 3)
    assert block.cell_box(3, 3, 3, 3).as_tuple() == pytest.approx((0.75, 0.75, 1.0, 1.0))


def test_global_view_is_its_own_block() -> None:
    spans = (
        GridSpan(0, 2, 2, Box(0.0, 0.0, 0.5, 1.0), 0, "tile"),
        GridSpan(4, 2, 2, Box(0.5, 0.0, 1.0, 1.0), 0, "tile"),
        GridSpan(8, 3, 3, Box.full(), 0, "global"),
    )
    blocks = layout.blocks(layout.scores_to_grids(np.ones(17), TokenLayout(spans), [Box.full()]))
    assert sorted(b.scores.shape for b in blocks) == [(2, 4), (3, 3)]
