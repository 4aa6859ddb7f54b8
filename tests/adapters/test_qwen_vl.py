"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL specifics: smart-resize geometry, M-RoPE, exact generation."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from egr_core.adapters.qwen_vl import QwenVLAdapter
from egr_core.config import EgrConfig
from egr_core.errors import InputError, TokenLayoutMismatchError
from egr_core.layout import Block
from egr_core.types import Box

from .conftest import TinyVLM, make_page

QWEN = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(params=QWEN)
def qwen(request: pytest.FixtureRequest, tiny_vlm_factory: Callable[[str], TinyVLM]) -> TinyVLM:
    return tiny_vlm_factory(request.param)


def test_defaults_follow_method_md() -> None:
    cfg = EgrConfig.for_adapter(QwenVLAdapter.config_defaults)
    assert (cfg.sigma, cfg.threshold, cfg.threshold_fraction) == (2.5, "fraction", 0.5)


@pytest.mark.parametrize("size", [(300, 400), (517, 203), (90, 1000)])
def test_grid_follows_the_smart_resize_geometry(qwen: TinyVLM, size: tuple[int, int]) -> None:
    """Each cell covers exactly its (patch*merge)^2 block of the resized image, i.e. the same
    fraction of the original: map a one-hot cell back and compare with the resize arithmetic."""
    ip = qwen.processor.image_processor
    factor = ip.patch_size * ip.merge_size
    w, h = size
    rh, rw = smart_resize(h, w, factor, ip.size["shortest_edge"], ip.size["longest_edge"])
    prep = qwen.adapter.prepare(qwen.processor, [make_page(w, h)], "Total?")
    (span,) = prep.layout.spans
    assert (span.rows, span.cols) == (rh // factor, rw // factor)
    assert prep.extra["resized_hw"] == ((rh, rw),)
    assert span.box == Box.full()
    block = Block(0, "view", torch.zeros(span.rows, span.cols).numpy(), span.box, Box.full())
    for r, c in ((0, 0), (span.rows - 1, span.cols - 1), (span.rows // 2, span.cols - 1)):
        got = block.cell_box(r, c, r, c)
        # resized pixels [c*F, (c+1)*F) scaled back by w/rw, normalised by w
        want = Box(c * factor / rw, r * factor / rh, (c + 1) * factor / rw, (r + 1) * factor / rh)
        assert got.as_tuple() == pytest.approx(want.as_tuple(), abs=1e-12)


def test_mismatched_placeholders_raise_with_both_numbers(qwen: TinyVLM) -> None:
    prep = qwen.adapter.prepare(qwen.processor, [make_page()], "Total?")
    n = prep.layout.n_tokens
    ids = prep.model_inputs["input_ids"].clone()
    ids[0, prep.image_positions[-1]] = qwen.processor.tokenizer.convert_tokens_to_ids("a")
    tampered = {**prep.model_inputs, "input_ids": ids}
    with pytest.raises(TokenLayoutMismatchError) as err:
        qwen.adapter.prepared_from_inputs(qwen.processor, tampered, prep.image_sizes)
    assert f"placeholders={n - 1}" in str(err.value) and f"grid cells={n}" in str(err.value)


def test_image_token_in_the_question_is_refused(qwen: TinyVLM) -> None:
    with pytest.raises(InputError, match="reserved image token"):
        qwen.adapter.prepare(qwen.processor, [make_page()], "what is <|image_pad|> here?")


def test_real_mrope_positions(qwen: TinyVLM) -> None:
    """Image tokens get (t, start + row, start + col); text resumes at max + 1; and the logits
    depend on it (1-D positions give different logits)."""
    page, crop = make_page(), make_page(200, 90, seed=3)
    prep = qwen.adapter.prepare(qwen.processor, [page, crop], "Total?")
    pos = qwen.adapter.rope_positions(qwen.model, prep)[:, 0]  # (3, T)
    ipos = prep.image_positions
    for span in prep.layout.spans:
        idx = ipos[span.start : span.start + span.n_tokens]  # (R*C,)
        p = pos[:, idx].reshape(3, span.rows, span.cols)
        s = int(pos[0, idx[0] - 1]) + 1  # first image position = previous text position + 1
        assert bool((p[0] == s).all())
        assert torch.equal(p[1], (s + torch.arange(span.rows))[:, None].expand(-1, span.cols))
        assert torch.equal(p[2], (s + torch.arange(span.cols))[None, :].expand(span.rows, -1))
        after = int(idx[-1]) + 1  # the vision-end token
        assert bool((pos[:, after] == s + max(span.rows, span.cols)).all())
    with torch.no_grad():
        feats = [qwen.adapter.encode_image(qwen.model, prep, i) for i in range(2)]
        embeds = qwen.adapter.embed(qwen.model, prep, feats)
        real = qwen.adapter.next_token_logits(qwen.model, prep, embeds)
        flat = torch.arange(embeds.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        out = qwen.adapter.decoder(qwen.model)(
            inputs_embeds=embeds,
            position_ids=flat,
            **qwen.adapter._decoder_kwargs([prep], embeds.shape[1], embeds.device),
        )
        one_d = qwen.model.lm_head(out.last_hidden_state[:, -1]).float()
    assert not torch.allclose(real, one_d, atol=1e-6)


def test_generate_ids_match_model_generate_token_for_token(qwen: TinyVLM) -> None:
    page = make_page(300, 400, seed=1)
    prep = qwen.adapter.prepare(qwen.processor, [page, page.crop((20, 40, 220, 140))], "Who?")
    with torch.no_grad():
        feats = [qwen.adapter.encode_image(qwen.model, prep, i) for i in range(2)]
        embeds = qwen.adapter.embed(qwen.model, prep, feats)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = qwen.adapter.generate_ids(qwen.model, prep, embeds, 16)
        ref = qwen.model.generate(**prep.model_inputs, max_new_tokens=16, do_sample=False)
    n = prep.model_inputs["input_ids"].shape[1]
    assert ours.tolist() == ref[0, n:].tolist()
    # The decode steps pass the KV cache under the name this transformers expects (the old
    # name warned a FutureWarning on every run).
    assert len(ours) > 1
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], caught


def test_encode_image_is_per_image_and_matches_the_batched_tower(qwen: TinyVLM) -> None:
    """Encoding images one at a time gives the rows the model's own batched call scatters."""
    page, crop = make_page(), Image.new("RGB", (120, 300), "gray")
    prep = qwen.adapter.prepare(qwen.processor, [page, crop], "Total?")
    mi = prep.model_inputs
    with torch.no_grad():
        ours = [qwen.adapter.encode_image(qwen.model, prep, i) for i in range(2)]
        batched = qwen.model.model.get_image_features(
            mi["pixel_values"], mi["image_grid_thw"], return_dict=True
        ).pooler_output
    d = batched[0].shape[1]
    for o, b in zip(ours, batched, strict=True):
        torch.testing.assert_close(o[:, :d], b, rtol=1e-5, atol=1e-5)


def test_a_last_round_sure_to_answer_answers_from_its_own_prefill(qwen: TinyVLM) -> None:
    """max_rounds == min_rounds: the last round is forward-only and its prefill gives the answer;
    the answer equals a separate generation over the same inputs."""
    from egr_core.explain import EntropyGradientGrounding

    page = make_page(300, 400)
    cfg = EgrConfig.for_adapter(
        QwenVLAdapter.config_defaults, max_rounds=1, min_rounds=1, max_new_tokens=6
    )
    egg = EntropyGradientGrounding(qwen.model, qwen.processor, qwen.adapter, cfg)
    (ans,) = egg.ground(page, ["What is shown?"], page_size_pt=(300.0, 400.0))
    assert egg.stats["generations"] == 1 and egg.stats["backwards"] == 1
    assert egg.stats["forwards"] == 2 and ans.extra["answer_round"] == 1
    assert ans.rounds[1].crops and not ans.rounds[1].grids
    # the same answer as a separate generation over [page, that crop]
    from egr_core.imaging import crop_long_side, raster_crop_fn

    cut = raster_crop_fn(page)
    crops = [
        cut(b, crop_long_side(b, (300.0, 400.0), cfg)).convert("RGB") for b in ans.rounds[1].crops
    ]
    images = [page.convert("RGB"), *crops]
    with torch.no_grad():
        prep = qwen.adapter.prepare(qwen.processor, images, "What is shown?")
        feats = [qwen.adapter.encode_image(qwen.model, prep, i) for i in range(len(images))]
        embeds = qwen.adapter.embed(qwen.model, prep, feats)
        text = qwen.adapter.generate(qwen.model, qwen.processor, prep, embeds, 6)
    assert text.strip() == ans.answer
