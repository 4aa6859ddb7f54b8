"""The VLMAdapter contract, checked on a tiny random checkpoint of every registered model type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from egr_core import layout as lay
from egr_core.adapters import get_adapter
from egr_core.adapters.base import VLMAdapter
from egr_core.config import EgrConfig
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box

from .conftest import TinyVLM, make_page

QUESTION = "What is the total amount?"


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def _hooks(model: torch.nn.Module) -> dict[tuple[str, str], frozenset[tuple[int, int]]]:
    """Every hook of every module (and torch's global ones): {(module, dict): {(id, fn id)}}.

    Compared before and after an egr call, this proves egr registers nothing and removes nothing.
    transformers installs its own output-capturing hooks lazily on a model's first forward and
    keeps them, so the snapshot is taken after a warm-up forward (see ``_warm_up``).
    """
    snap = {
        (name, attr): frozenset((k, id(f)) for k, f in getattr(m, attr).items())
        for name, m in model.named_modules()
        for attr in _HOOK_DICTS
        if hasattr(m, attr)
    }
    glob = torch.nn.modules.module
    for attr in _GLOBAL_HOOK_DICTS:
        snap[("<global>", attr)] = frozenset((k, id(f)) for k, f in getattr(glob, attr).items())
    return snap


def _warm_up(t: TinyVLM, page: Image.Image) -> None:
    """One model forward (vision + decoder) so transformers' lazy hooks are in place."""
    prep = t.adapter.prepare(t.processor, [page], QUESTION)
    with torch.no_grad():
        t.model(**prep.model_inputs)


def _encode_all(t: TinyVLM, prep: Any) -> list[torch.Tensor]:
    return [t.adapter.encode_image(t.model, prep, i) for i in range(len(prep.image_sizes))]


def _cell_box(span: Any, r: int, c: int) -> Box:
    """Image-normalised box of cell (r, c) of a span."""
    return span.box.sub(Box(c / span.cols, r / span.rows, (c + 1) / span.cols, (r + 1) / span.rows))


def test_registry_serves_the_model(tiny: TinyVLM) -> None:
    assert isinstance(tiny.adapter, VLMAdapter)
    assert tiny.model_type in type(tiny.adapter).model_types
    assert type(get_adapter(tiny.model)) is type(tiny.adapter)
    EgrConfig.for_adapter(type(tiny.adapter).config_defaults)  # defaults are valid knobs


def test_every_adapter_has_a_tiny_builder() -> None:
    from egr.tiny import tiny_model_types
    from egr_core.adapters import supported_model_types

    missing = sorted(set(supported_model_types()) - set(tiny_model_types()))
    assert not missing, f"adapters without a tiny checkpoint builder: {missing}"


def test_placeholders_equal_grid_cells(tiny: TinyVLM, page: Image.Image) -> None:
    crop = page.crop((0, 100, 300, 180))  # wide crop, 300x80
    prep = tiny.adapter.prepare(tiny.processor, [page, crop], QUESTION)
    ids = prep.model_inputs["input_ids"][0]  # (T,)
    pos = prep.image_positions
    assert pos.ndim == 1 and len(pos) == prep.layout.n_tokens == sum(prep.image_token_counts)
    assert bool((pos[1:] > pos[:-1]).all()) and int(pos[0]) >= 0 and int(pos[-1]) < len(ids)
    # spans tile the image-token sequence in order, and each image's spans sum to its count
    start = 0
    for span in prep.layout.spans:
        assert span.start == start
        start += span.n_tokens
    for i, count in enumerate(prep.image_token_counts):
        assert sum(s.n_tokens for s in prep.layout.spans if s.image_index == i) == count
    assert prep.image_sizes == ((300, 400), (300, 80))
    assert len(prep.cache_keys) == 2 and prep.cache_keys[0] != prep.cache_keys[1]
    # the placeholders hold the image token id only
    assert len(set(ids[pos].tolist())) == 1


def test_features_embeddings_gradient_and_map_shape(tiny: TinyVLM, page: Image.Image) -> None:
    model, adapter = tiny.model, tiny.adapter
    prep = adapter.prepare(tiny.processor, [page], QUESTION)
    before = {k: v.clone() for k, v in prep.model_inputs.items()}
    feats = _encode_all(tiny, prep)
    assert [f.shape[0] for f in feats] == list(prep.image_token_counts)
    assert not any(f.requires_grad for f in feats)
    embeds = adapter.embed(model, prep, feats)  # (1, T, D)
    d = model.get_input_embeddings().weight.shape[1]
    assert embeds.shape == (1, prep.model_inputs["input_ids"].shape[1], d)
    torch.testing.assert_close(embeds[0, prep.image_positions], torch.cat(feats)[:, :d])

    leaf = embeds.detach().requires_grad_(True)
    logits = adapter.next_token_logits(model, prep, leaf)
    assert logits.shape == (1, model.get_output_embeddings().weight.shape[0])
    assert logits.dtype == torch.float32
    h = -(logits.softmax(-1) * logits.log_softmax(-1)).sum()
    h.backward()
    grad = leaf.grad[0, prep.image_positions]  # (N, D)
    assert grad.shape == (len(prep.image_positions), d) and bool(grad.abs().sum() > 0)
    assert all(p.grad is None for p in model.parameters()), "a weight received a gradient"
    grids = lay.scores_to_grids(grad.norm(dim=-1).numpy(), prep.layout, [Box.full()])
    assert [g.scores.shape for g in grids] == [(s.rows, s.cols) for s in prep.layout.spans]
    for k, v in prep.model_inputs.items():  # inputs not mutated
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_logits_match_the_model_forward(tiny: TinyVLM, page: Image.Image) -> None:
    """Positions are the model's own (M-RoPE for Qwen): same logits as a plain forward."""
    prep = tiny.adapter.prepare(tiny.processor, [page, page.crop((50, 50, 250, 150))], QUESTION)
    with torch.no_grad():
        embeds = tiny.adapter.embed(tiny.model, prep, _encode_all(tiny, prep))
        ours = tiny.adapter.next_token_logits(tiny.model, prep, embeds)
        ref = tiny.model(**prep.model_inputs).logits[:, -1, :].float()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_one_hot_token_maps_to_a_box_covering_its_pixels(tiny: TinyVLM) -> None:
    """Paint a dark block inside one cell's pixels; the token whose features change most is
    that cell, and a one-hot score on it maps (via the layout) to a box covering the block."""
    adapter, model = tiny.adapter, tiny.model
    base = Image.new("RGB", (300, 400), "white")  # non-square
    prep0 = adapter.prepare(tiny.processor, [base], QUESTION)
    f0 = adapter.encode_image(model, prep0, 0)
    spans = [s for s in prep0.layout.spans if s.image_index == 0 and s.kind != "thumbnail"]
    for span in (spans[0], spans[-1]) if len(spans) > 1 else (spans[0],):
        for r, c in ((0, 0), (span.rows - 1, span.cols - 1), (span.rows // 2, span.cols // 3)):
            cell = _cell_box(span, r, c)
            block = Box(
                cell.x0 + 0.25 * cell.width, cell.y0 + 0.25 * cell.height,
                cell.x1 - 0.25 * cell.width, cell.y1 - 0.25 * cell.height,
            )  # fmt: skip
            img = base.copy()
            ImageDraw.Draw(img).rectangle(
                [block.x0 * 300, block.y0 * 400, block.x1 * 300 - 1, block.y1 * 400 - 1], fill=0
            )
            prep = adapter.prepare(tiny.processor, [img], QUESTION)
            change = (adapter.encode_image(model, prep, 0) - f0).norm(dim=-1)  # (N_0,)
            local = change[span.start : span.start + span.n_tokens]
            k = int(local.argmax())
            assert (k // span.cols, k % span.cols) == (r, c), (
                f"{tiny.model_type}: block in cell {(r, c)} of a {span.rows}x{span.cols} span "
                f"changed token {(k // span.cols, k % span.cols)} most"
            )
            one_hot = np.zeros(prep.layout.n_tokens, dtype=np.float32)
            one_hot[span.start + k] = 1.0
            grids = lay.scores_to_grids(one_hot, prep.layout, [Box.full()])
            blk = next(b for b in lay.blocks(grids) if b.scores.max() > 0)
            rr, cc = np.unravel_index(int(blk.scores.argmax()), blk.scores.shape)
            mapped = blk.cell_box(int(rr), int(cc), int(rr), int(cc))
            assert mapped.contains(block, tol=1e-6), (mapped, block)
            assert mapped.area <= cell.area + 1e-9


def test_page_cache_keys_shared_across_questions(tiny: TinyVLM, page: Image.Image) -> None:
    keys = {tiny.adapter.prepare(tiny.processor, [page], q).cache_keys[0] for q in ("a?", "bb?")}
    assert len(keys) == 1
    other = tiny.adapter.prepare(tiny.processor, [make_page(seed=5)], "a?").cache_keys[0]
    assert other not in keys


def test_cached_preprocessing_equals_the_processor(tiny: TinyVLM, page: Image.Image) -> None:
    """With a per-call ImageCache, prepare returns exactly the processor's own inputs (tiles,
    grids, padding, placeholder expansion), and each distinct image is preprocessed once."""
    from egr_core.adapters.base import ImageCache

    crops = [
        page.crop((0, 100, 300, 180)),
        page.crop((50, 50, 250, 150)),
        page.crop((10, 0, 60, 400)),
    ]
    cache = ImageCache()
    lists = ([page], [page, crops[0]], [page, crops[1], crops[2]], [crops[2], page])
    for images in lists:
        for q in (QUESTION, "Who signed it?"):
            ref = tiny.adapter.prepare(tiny.processor, images, q)
            got = tiny.adapter.prepare(tiny.processor, images, q, cache=cache)
            assert got.model_inputs.keys() == ref.model_inputs.keys()
            for k, v in ref.model_inputs.items():
                w = got.model_inputs[k]
                assert type(w) is type(v), k
                if isinstance(v, torch.Tensor):
                    assert w.shape == v.shape and w.dtype == v.dtype, k
                    assert torch.equal(w, v), f"{tiny.model_type}: cached {k} differs"
                else:
                    assert w == v, k
            assert torch.equal(got.image_positions, ref.image_positions)
            assert got.layout == ref.layout and got.cache_keys == ref.cache_keys
            assert got.image_token_counts == ref.image_token_counts
    assert cache.misses == 4, f"4 distinct images, {cache.misses} preprocessing runs"
    assert cache.hits == 2 * sum(len(x) for x in lists) - 4


def test_page_encoded_once_for_several_questions(
    tiny: TinyVLM, page: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from egr_core.explain import EntropyGradientGrounding

    adapter = tiny.adapter
    encoded: list[Any] = []
    real = adapter.encode_image

    def counting(model: Any, prep: Any, index: int) -> torch.Tensor:
        encoded.append(prep.cache_keys[index])
        return real(model, prep, index)

    _warm_up(tiny, page)
    monkeypatch.setattr(adapter, "encode_image", counting)
    cfg = EgrConfig.for_adapter(type(adapter).config_defaults, max_rounds=1, max_new_tokens=3)
    egg = EntropyGradientGrounding(tiny.model, tiny.processor, adapter, cfg)
    hooks = _hooks(tiny.model)
    answers = egg.ground(page, ["What is the total?", "Who signed it?", "When was it dated?"])
    assert len(answers) == 3
    page_key = adapter.prepare(tiny.processor, [page], "x?").cache_keys[0]
    assert encoded.count(page_key) == 1, f"page view encoded {encoded.count(page_key)} times"
    assert len(encoded) == len(set(encoded)), "an image was encoded twice"
    assert egg.stats["vision_encodes"] == len(encoded)
    assert egg.stats["preprocess_cache_hits"] >= 2  # questions 2 and 3 reuse the page's pixels
    assert _hooks(tiny.model) == hooks, "egr left hooks behind (or removed some)"


def test_no_hooks_or_grad_state_left_after_a_raising_forward(
    tiny: TinyVLM, page: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from egr_core.explain import EntropyGradientGrounding

    adapter, model = tiny.adapter, tiny.model
    real = adapter.next_token_logits

    def boom(m: Any, prep: Any, embeds: torch.Tensor) -> torch.Tensor:
        real(m, prep, embeds)
        raise RuntimeError("forward failed on purpose")

    _warm_up(tiny, page)
    hooks, grad_on = _hooks(model), torch.is_grad_enabled()
    flags = [p.requires_grad for p in model.parameters()]
    monkeypatch.setattr(adapter, "next_token_logits", boom)
    egg = EntropyGradientGrounding(model, tiny.processor, adapter)
    with pytest.raises(RuntimeError, match="on purpose"):
        egg.ground(page, ["What is the total?"])
    # and a forward that raises inside the decoder itself (bad hidden size)
    monkeypatch.setattr(adapter, "next_token_logits", real)
    prep = adapter.prepare(tiny.processor, [page], QUESTION)
    bad = torch.zeros(1, prep.model_inputs["input_ids"].shape[1], 3)
    with pytest.raises((RuntimeError, ValueError)):
        adapter.embed(model, prep, _encode_all(tiny, prep))
        adapter.next_token_logits(model, prep, bad)
    assert _hooks(model) == hooks, "egr left hooks behind (or removed some)"
    assert torch.is_grad_enabled() == grad_on
    assert [p.requires_grad for p in model.parameters()] == flags


def test_feature_rows_mismatch_raises_with_both_numbers(tiny: TinyVLM, page: Image.Image) -> None:
    prep = tiny.adapter.prepare(tiny.processor, [page], QUESTION)
    feats = _encode_all(tiny, prep)
    n = len(prep.image_positions)
    with pytest.raises(TokenLayoutMismatchError) as err:
        tiny.adapter.embed(tiny.model, prep, [feats[0][:-1]])
    assert str(n) in str(err.value) and str(n - 1) in str(err.value)


def test_generate_equals_model_generate(tiny: TinyVLM, page: Image.Image) -> None:
    """Greedy answer from precomputed embeddings == model.generate on the processor inputs."""
    prep = tiny.adapter.prepare(tiny.processor, [page, page.crop((0, 0, 150, 120))], QUESTION)
    with torch.no_grad():
        embeds = tiny.adapter.embed(tiny.model, prep, _encode_all(tiny, prep))
        ours = tiny.adapter.generate(tiny.model, tiny.processor, prep, embeds, 10)
        ids = tiny.model.generate(**prep.model_inputs, max_new_tokens=10, do_sample=False)
    n = prep.model_inputs["input_ids"].shape[1]
    ref = tiny.processor.tokenizer.decode(ids[0, n:].tolist(), skip_special_tokens=True).strip()
    assert ours == ref


def test_generate_with_logits_is_generate_plus_first_token_logits(
    tiny: TinyVLM, page: Image.Image
) -> None:
    """Plain mode's single prefill: same answer as generate, same logits as next_token_logits."""
    prep = tiny.adapter.prepare(tiny.processor, [page, page.crop((0, 0, 150, 120))], QUESTION)
    with torch.no_grad():
        embeds = tiny.adapter.embed(tiny.model, prep, _encode_all(tiny, prep))
        text, logits = tiny.adapter.generate_with_logits(
            tiny.model, tiny.processor, prep, embeds, 6
        )
        ref_logits = tiny.adapter.next_token_logits(tiny.model, prep, embeds)
        ref_text = tiny.adapter.generate(tiny.model, tiny.processor, prep, embeds, 6)
    assert text == ref_text
    assert logits.shape == ref_logits.shape and logits.dtype == torch.float32
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_answer_logprob_matches_the_model_forward_on_the_whole_sequence(
    tiny: TinyVLM, page: Image.Image
) -> None:
    """Scoring an answer from precomputed embeddings (read_scales) gives the log-probability the
    model's own forward gives to those tokens appended to the prompt ids (its positions, M-RoPE
    included); a different answer scores differently."""
    prep = tiny.adapter.prepare(tiny.processor, [page, page.crop((0, 0, 150, 120))], QUESTION)
    tok = tiny.processor.tokenizer
    answers = [
        torch.tensor(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id or 0])
        for text in ("total 42", "INV-7")
    ]
    scores = []
    with torch.no_grad():
        embeds = tiny.adapter.embed(tiny.model, prep, _encode_all(tiny, prep))
        for ids in answers:
            ours = tiny.adapter.answer_logprob(tiny.model, prep, embeds, ids)
            inputs = dict(prep.model_inputs)
            t = int(inputs["input_ids"].shape[1])
            for key, value in prep.model_inputs.items():  # every per-token input grows by n - 1
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape[:2] == (1, t)
                    and value.ndim == 2
                ):
                    fill = {"input_ids": ids[:-1].view(1, -1), "attention_mask": None}.get(key)
                    more = torch.ones if key == "attention_mask" else torch.zeros
                    tail = fill if fill is not None else more((1, len(ids) - 1), dtype=value.dtype)
                    inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
            logits = tiny.model(**inputs).logits[0, t - 1 :].float().log_softmax(-1)
            ref = float(logits[torch.arange(len(ids)), ids].sum())
            assert ours == pytest.approx(ref, rel=1e-4, abs=1e-4)
            scores.append(ours)
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)


def test_scored_decoding_is_generate_plus_the_teacher_forced_log_probability(
    tiny: TinyVLM, page: Image.Image
) -> None:
    """The answer step's scored decoding: the same answer as generate, its ids, and the summed
    log-probability answer_logprob gives those ids by teacher forcing (so the answer step may
    skip that pass for a view's own answer); two prompts decoded together agree with one each."""
    preps = [
        tiny.adapter.prepare(tiny.processor, [page, page.crop((0, 0, 150, 120))], QUESTION),
        tiny.adapter.prepare(tiny.processor, [page.crop((20, 10, 170, 130))], QUESTION),
    ]
    with torch.no_grad():
        embeds = [tiny.adapter.embed(tiny.model, p, _encode_all(tiny, p)) for p in preps]
        both = tiny.adapter.batch_generate_scored(tiny.model, tiny.processor, preps, embeds, 6)
        for prep, emb, got in zip(preps, embeds, both, strict=True):
            (alone,) = tiny.adapter.batch_generate_scored(
                tiny.model, tiny.processor, [prep], [emb], 6
            )
            assert (
                got.text
                == alone.text
                == tiny.adapter.generate(tiny.model, tiny.processor, prep, emb, 6)
            )
            assert got.ids == alone.ids and 1 <= len(got.ids) <= 6
            forced = tiny.adapter.answer_logprob(tiny.model, prep, emb, torch.tensor(got.ids))
            assert got.logprob == pytest.approx(forced, rel=1e-4, abs=1e-4)
            assert alone.logprob == pytest.approx(got.logprob, rel=1e-4, abs=1e-4)
