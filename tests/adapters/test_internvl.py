"""InternVL (HF-native) adapter: tiles on the canvas, thumbnail recorded but not mapped."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from egr_core.errors import TokenLayoutMismatchError

from ._geometry import QUESTION, assert_box_equals, generate_pair, one_hot_box

S = 4  # the tiny checkpoint: 112 px tiles, patch 14, pixel shuffle 0.5 -> 4x4 tokens per tile


@pytest.fixture(scope="module")
def t(tiny_vlm_factory):
    return tiny_vlm_factory("internvl")


def test_wide_page_gets_two_columns_and_a_thumbnail(t) -> None:
    # 150x90 (aspect 1.67): of the arrangements with <= 4 tiles, 2 cols x 1 row (aspect 2) is
    # the closest, so two tiles then the thumbnail.
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (150, 90), "white")], QUESTION)
    kinds = [s.kind for s in prep.layout.spans]
    assert kinds == ["tile", "tile", "thumbnail"]
    assert_box_equals(prep.layout.spans[0].box, (0.0, 0.0, 0.5, 1.0))
    assert_box_equals(prep.layout.spans[1].box, (0.5, 0.0, 1.0, 1.0))
    assert_box_equals(prep.layout.spans[2].box, (0.0, 0.0, 1.0, 1.0))
    assert prep.image_positions.numel() == 3 * S * S == prep.layout.n_tokens
    ids = prep.model_inputs["input_ids"][0]
    start_id = t.processor.start_image_token_id
    assert int((ids == start_id).sum()) == 1  # <img>/</img> are not image positions
    assert not bool((ids[prep.image_positions] == start_id).any())


def test_tile_pixels_come_from_their_boxes(t) -> None:
    """Left half red, right half blue: tile 0 is red, tile 1 blue, the thumbnail both."""
    img = Image.new("RGB", (150, 90), (255, 0, 0))
    img.paste((0, 0, 255), (75, 0, 150, 90))
    px = t.adapter.prepare(t.processor, [img], QUESTION).model_inputs["pixel_values"]  # (3,3,T,T)
    red_minus_blue = (px[:, 0] - px[:, 2]).mean(dim=(-1, -2))  # (3,)
    assert red_minus_blue[0] > 1.5 and red_minus_blue[1] < -1.5 and abs(red_minus_blue[2]) < 0.1


def test_tall_page_and_one_hot_boxes(t) -> None:
    # 90x200 (aspect 0.45): 1 col x 2 rows (aspect 0.5) is closest.
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (90, 200), "white")], QUESTION)
    assert [s.kind for s in prep.layout.spans] == ["tile", "tile", "thumbnail"]
    for tile in (0, 1):
        for r, c in [(0, 0), (3, 3), (1, 2)]:
            got = one_hot_box(prep, tile * S * S + r * S + c)
            assert got is not None
            # Tile k covers y in [k/2, (k+1)/2]; cell (r, c) splits it 4x4.
            want = (c / S, (tile + r / S) / 2, (c + 1) / S, (tile + (r + 1) / S) / 2)
            assert_box_equals(got, want)
    assert one_hot_box(prep, 2 * S * S + 5) is None  # thumbnail: not used for regions


def test_small_square_image_is_one_view(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (100, 100), "white")], QUESTION)
    (span,) = prep.layout.spans
    assert (span.kind, span.rows, span.cols) == ("view", S, S)


def test_feature_mismatch_names_both_numbers(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (150, 90))], QUESTION)
    bad = dataclasses.replace(prep, image_token_counts=(47,))
    with pytest.raises(TokenLayoutMismatchError) as ei:
        t.adapter.encode_image(t.model, bad, 0)
    assert "47" in str(ei.value) and "48" in str(ei.value)


def test_generate_equals_model_generate(t) -> None:
    imgs = [Image.new("RGB", (150, 90), "white"), Image.new("RGB", (50, 120), "gray")]
    ours, ref = generate_pair(t, imgs)
    assert ours == ref and ours
