"""LLaVA-1.5 adapter: CLIP resize + centre-crop geometry on non-square images, exactly."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from egr_core.adapters.llava import clip_view
from egr_core.errors import TokenLayoutMismatchError

from ._geometry import QUESTION, assert_box_equals, generate_pair, one_hot_box

S, PATCH = 84, 14  # the tiny checkpoint: shortest edge 84, crop 84x84, patch 14 -> 6x6


@pytest.fixture(scope="module")
def t(tiny_vlm_factory):
    return tiny_vlm_factory("llava")


def expected_crop(w: int, h: int) -> tuple[float, float, float, float]:
    """The surviving box, derived by hand: short side -> S, long -> floor(S*long/short),
    then a centre crop S x S starting at floor((long' - S) / 2)."""
    if w >= h:
        long_r = math.floor(S * w / h)
        off = (long_r - S) // 2
        return (off / long_r, 0.0, (off + S) / long_r, 1.0)
    long_r = math.floor(S * h / w)
    off = (long_r - S) // 2
    return (0.0, off / long_r, 1.0, (off + S) / long_r)


@pytest.mark.parametrize("size", [(150, 90), (90, 150), (211, 97), (84, 84)])
def test_span_box_is_the_part_that_survives_the_crop(t, size) -> None:
    img = Image.new("RGB", size, "white")
    prep = t.adapter.prepare(t.processor, [img], QUESTION)
    (span,) = prep.layout.spans
    assert (span.rows, span.cols) == (S // PATCH, S // PATCH)
    assert_box_equals(span.box, expected_crop(*size))
    assert prep.image_positions.numel() == 36 == prep.layout.n_tokens


def test_pixels_confirm_the_crop(t) -> None:
    """Red columns exactly outside the predicted box are cropped away; inside stays white."""
    w, h = 211, 97
    x0, _, x1, _ = expected_crop(w, h)
    img = Image.new("RGB", (w, h), "white")
    cut_l, cut_r = math.floor(x0 * w) - 1, math.ceil(x1 * w) + 1
    img.paste((255, 0, 0), (0, 0, cut_l, h))
    img.paste((255, 0, 0), (cut_r, 0, w, h))

    def pixels(im: Image.Image) -> torch.Tensor:
        return t.adapter.prepare(t.processor, [im], QUESTION).model_inputs["pixel_values"][0]

    white = pixels(Image.new("RGB", (w, h), "white"))  # (3, 84, 84), CLIP-normalised
    assert float((pixels(img) - white)[:, :, 1:-1].abs().max()) < 0.05  # no red survived
    inside = Image.new("RGB", (w, h), "white")
    inside.paste((255, 0, 0), (math.ceil(x0 * w) + 1, 0, math.ceil(x0 * w) + 4, h))
    assert float((pixels(inside) - white).abs().max()) > 0.5  # red just inside the box shows


def test_one_hot_token_maps_to_its_pixels_in_the_original(t) -> None:
    w, h = 150, 90
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (w, h), "white")], QUESTION)
    long_r = math.floor(S * w / h)  # 140
    off = (long_r - S) // 2  # 28
    for r, c in [(0, 0), (5, 5), (2, 4)]:
        got = one_hot_box(prep, r * 6 + c)
        assert got is not None
        # Cell (r, c) = crop pixels [c*14, (c+1)*14) x [r*14, ...); resized -> original by w/140.
        want = ((off + c * PATCH) / long_r, r * PATCH / S, (off + (c + 1) * PATCH) / long_r,
                (r + 1) * PATCH / S)  # fmt: skip
        assert_box_equals(got, want)


def test_two_images_get_their_own_spans(t) -> None:
    imgs = [Image.new("RGB", (150, 90), "white"), Image.new("RGB", (40, 70), "white")]
    prep = t.adapter.prepare(t.processor, imgs, QUESTION)
    assert [s.start for s in prep.layout.spans] == [0, 36]
    assert [s.image_index for s in prep.layout.spans] == [0, 1]
    assert prep.image_token_counts == (36, 36)
    ids = prep.model_inputs["input_ids"][0]
    assert bool((ids[prep.image_positions] == t.processor.image_token_id).all())


def test_feature_mismatch_names_both_numbers(t) -> None:
    prep = t.adapter.prepare(t.processor, [Image.new("RGB", (150, 90))], QUESTION)
    bad = dataclasses.replace(prep, image_token_counts=(35,))
    with pytest.raises(TokenLayoutMismatchError) as ei:
        t.adapter.encode_image(t.model, bad, 0)
    assert "35" in str(ei.value) and "36" in str(ei.value)


def test_letterboxing_processor_is_refused() -> None:
    ip = SimpleNamespace(do_pad=True, do_resize=True, size={"shortest_edge": 84})
    with pytest.raises(ValueError, match="do_pad"):
        clip_view(ip, 150, 90, 14)


def test_generate_equals_model_generate(t) -> None:
    torch.manual_seed(0)
    imgs = [Image.new("RGB", (150, 90), "white"), Image.new("RGB", (60, 40), "gray")]
    ours, ref = generate_pair(t, imgs)
    assert ours == ref and ours
