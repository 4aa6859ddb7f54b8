"""LLaVA-NeXT adapter: base view + unpadded any-res canvas; newline tokens accounted for."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from PIL import Image

from egr_core.errors import TokenLayoutMismatchError

from ._geometry import QUESTION, assert_box_equals, generate_pair, one_hot_box

TILE, PATCH, G = 56, 14, 4  # the tiny checkpoint: 56 px views, 4x4 cells each


@pytest.fixture(scope="module")
def t(tiny_vlm_factory):
    return tiny_vlm_factory("llava_next")


# Hand derivation for a 150x90 page (pinpoints 56x112, 112x56, 112x112):
# best fit = 112x112 (effective 112*67 px beats 93*56), so the canvas is 8x8 cells of 14 px.
# Resize into it keeping aspect: 112 x ceil(90*112/150)=68 px, pasted at y=(112-68)//2=22.
# Unpad: kept rows = int(90*8/150) = 4, pad = (8-4)//2 = 2 -> rows 2..5, i.e. canvas px y 28..84.
WIDE = (150, 90)
WIDE_CANVAS = (0.0, (28 - 22) / 68, 1.0, (84 - 22) / 68)


def test_wide_page_layout(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", WIDE, "white")], QUESTION)
    base, canvas = prep.layout.spans
    assert (base.kind, base.rows, base.cols, base.start) == ("global", G, G, 0)
    assert_box_equals(base.box, (0.0, 0.0, 1.0, 1.0))
    assert (canvas.kind, canvas.rows, canvas.cols, canvas.start) == ("tile", 4, 8, 16)
    assert_box_equals(canvas.box, WIDE_CANVAS)


def test_tall_page_is_the_transpose(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", WIDE[::-1], "white")], QUESTION)
    _, canvas = prep.layout.spans
    assert (canvas.rows, canvas.cols) == (8, 4)
    x0, y0, x1, y1 = WIDE_CANVAS
    assert_box_equals(canvas.box, (y0, x0, y1, x1))


def test_every_placeholder_is_an_image_cell_or_a_newline(t) -> None:
    """Placeholders = base cells + canvas cells + one newline per canvas row; the excluded
    positions are exactly where the model's own packing puts ``image_newline``."""
    imgs = [Image.new("RGB", WIDE, "white"), Image.new("RGB", (40, 100), "gray")]
    prep = t.adapter.prepare(t.processor, imgs, QUESTION)
    ids = prep.model_inputs["input_ids"][0]
    placeholders = (ids == t.processor.image_token_id).nonzero(as_tuple=True)[0]
    newline = prep.extra["newline_positions"]
    canvas_rows = sum(s.rows for s in prep.layout.spans if s.kind == "tile")
    assert newline.numel() == canvas_rows
    assert placeholders.numel() == prep.layout.n_tokens + canvas_rows
    assert set(placeholders.tolist()) == set(prep.image_positions.tolist()) | set(newline.tolist())
    # The model's packed features of image 0: newline rows equal the learned newline vector.
    with torch.no_grad():
        packed = t.model.model.get_image_features(
            prep.model_inputs["pixel_values"][:1], prep.model_inputs["image_sizes"][:1],
            vision_feature_layer=t.model.config.vision_feature_layer,
            vision_feature_select_strategy="default", return_dict=True,
        ).pooler_output[0]  # fmt: skip
    is_nl = (packed - t.model.model.image_newline).abs().amax(-1) == 0
    assert is_nl.tolist() == (~prep.extra["keep_masks"][0]).tolist()


def test_embed_matches_the_model_scatter(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", WIDE, "white")], QUESTION)
    ours = t.adapter.embed(t.model, prep, [t.adapter.encode_image(t.model, prep, 0)])
    captured = {}

    def grab(_m, _a, kw):
        captured["e"] = kw["inputs_embeds"].detach().clone()

    h = t.model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            t.model(**prep.model_inputs)
    finally:
        h.remove()
    assert torch.allclose(ours, captured["e"], atol=1e-6)


def test_one_hot_tokens_map_to_their_pixels(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", WIDE, "white")], QUESTION)
    w, h = WIDE
    new_h, paste_y, cell = math.ceil(h * 112 / w), 22, 14
    # Base view: the image squashed to 4x4 cells, exactly.
    got = one_hot_box(prep, 1 * G + 2)
    assert got is not None
    assert_box_equals(got, (2 / 4, 1 / 4, 3 / 4, 2 / 4))
    # Canvas cell (r, c) = canvas px [(2 + r) * 14, ...) vertically, [c * 14, ...) horizontally.
    for r, c in [(0, 0), (3, 7), (1, 5)]:
        got = one_hot_box(prep, 16 + r * 8 + c)
        assert got is not None
        want = (c * cell / 112, ((2 + r) * cell - paste_y) / new_h, (c + 1) * cell / 112,
                ((3 + r) * cell - paste_y) / new_h)  # fmt: skip
        assert_box_equals(got, want)


def test_feature_mismatch_names_both_numbers(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", WIDE)], QUESTION)
    bad = dataclasses.replace(prep, image_token_counts=(47,))
    with pytest.raises(TokenLayoutMismatchError) as ei:
        t.adapter.encode_image(t.model, bad, 0)
    assert "47" in str(ei.value) and "48" in str(ei.value)


def test_generate_equals_model_generate(t) -> None:
    imgs = [Image.new("RGB", WIDE, "white"), Image.new("RGB", (40, 100), "gray")]
    ours, ref = generate_pair(t, imgs)
    assert ours == ref and ours
