"""Idefics3 / SmolVLM adapter: per-tile grids plus the global view; marker tokens excluded."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from egr_core.adapters.idefics3 import split_grid
from egr_core.errors import TokenLayoutMismatchError

from ._geometry import QUESTION, assert_box_equals, generate_pair, one_hot_box

S = 4  # the tiny checkpoints: 112 px tiles, patch 14, pixel shuffle 2 -> 4x4 tokens per tile


@pytest.fixture(scope="module", params=["idefics3", "smolvlm"])
def t(request, tiny_vlm_factory):
    return tiny_vlm_factory(request.param)


@pytest.mark.parametrize("size", [(150, 90), (90, 150), (300, 40), (60, 60), (224, 113)])
def test_split_grid_matches_the_image_processor(t, size) -> None:
    info = t.processor.image_processor(
        images=[Image.new("RGB", size, "white")], return_row_col_info=True
    )
    assert split_grid(t.processor.image_processor, *size) == (
        info["rows"][0][0],
        info["cols"][0][0],
    )


def test_wide_page_layout_and_markers(t) -> None:
    # 150x90 -> long side 224: 224 x int(224/1.667)=134 -> tiles: 224 x ceil(134/112)*112 = 224,
    # so 2x2 tiles of 112 px, then the global view.
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (150, 90), "white")], QUESTION)
    spans = prep.layout.spans
    assert [s.kind for s in spans] == ["tile"] * 4 + ["global"]
    for k, s in enumerate(spans[:4]):
        r, c = divmod(k, 2)
        assert_box_equals(s.box, (c / 2, r / 2, (c + 1) / 2, (r + 1) / 2))
    ids = prep.model_inputs["input_ids"][0]
    tok = t.processor.tokenizer
    markers = [tok.convert_tokens_to_ids(x) for x in ("<fake_token_around_image>", "<global-img>")]
    markers += [tok.convert_tokens_to_ids(f"<row_{i}_col_{j}>") for i in (1, 2) for j in (1, 2)]
    for m in markers:
        assert int((ids == m).sum()) >= 1
        assert not bool((ids[prep.image_positions] == m).any())
    assert bool((ids[prep.image_positions] == t.processor.image_token_id).all())
    assert prep.image_positions.numel() == 5 * S * S == prep.layout.n_tokens


def test_tile_pixels_come_from_their_boxes(t) -> None:
    """Quadrants red/green/blue/black map to tiles 0..3 in raster order."""
    w, h = 150, 90
    img = Image.new("RGB", (w, h))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)]
    for k, col in enumerate(colours):
        r, c = divmod(k, 2)
        img.paste(col, (c * w // 2, r * h // 2, (c + 1) * w // 2, (r + 1) * h // 2))
    px = t.adapter.prepare(t.processor, [img], QUESTION).model_inputs["pixel_values"][0]
    for k, col in enumerate(colours):
        mean = px[k].mean(dim=(-1, -2))  # (3,), normalised with mean/std 0.5 -> [-1, 1]
        want = [2 * v / 255 - 1 for v in col]
        assert max(abs(float(a) - b) for a, b in zip(mean, want, strict=True)) < 0.15


def test_one_hot_boxes_on_tiles_and_global(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (90, 150), "white")], QUESTION)
    spans = prep.layout.spans
    rows = max(round(s.box.y1 * 2) for s in spans[:-1])
    assert rows == 2 and len(spans) == 5
    for k in range(4):
        tr, tc = divmod(k, 2)
        for r, c in [(0, 0), (3, 1)]:
            got = one_hot_box(prep, k * S * S + r * S + c)
            assert got is not None
            want = ((tc + c / S) / 2, (tr + r / S) / 2, (tc + (c + 1) / S) / 2,
                    (tr + (r + 1) / S) / 2)  # fmt: skip
            assert_box_equals(got, want)
    got = one_hot_box(prep, 4 * S * S + 2 * S + 1)  # global view cell (2, 1)
    assert got is not None
    assert_box_equals(got, (1 / S, 2 / S, 2 / S, 3 / S))


def test_feature_mismatch_names_both_numbers(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (150, 90))], QUESTION)
    bad = dataclasses.replace(prep, image_token_counts=(79,))
    with pytest.raises(TokenLayoutMismatchError) as ei:
        t.adapter.encode_image(t.model, bad, 0)
    assert "79" in str(ei.value) and "80" in str(ei.value)


def test_generate_equals_model_generate(t) -> None:
    imgs = [Image.new("RGB", (150, 90), "white"), Image.new("RGB", (50, 40), "gray")]
    # (the random tiny model mostly emits <row_i_col_j> specials, which decode to "")
    ours, ref = generate_pair(t, imgs, question="Name?")
    assert ours == ref and ours
