"""A page's questions run as batches (one decoder forward, one entropy backward, one decode per
round) and give what they give one at a time: the rows of a batch do not mix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from egr_core.config import EgrConfig
from egr_core.explain import EntropyGradientGrounding
from egr_core.relevance import entropy_gradient, entropy_gradients, frozen
from egr_core.types import GroundedAnswer

from .conftest import TinyVLM, make_page

QWEN = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
#: Questions of different lengths, so the batch pads.
QUESTIONS = [
    "Total?",
    "What is the invoice number printed near the top right corner of this page?",
    "Who signed it?",
    "What is the due date of the payment, and in which currency is it due?",
]
#: Round 0 and round 1 map, round 2 is a light forward that answers from its prefill.
CONFIG = EgrConfig(
    sigma=1.0, threshold="fraction", threshold_fraction=0.5, top_k=2, max_rounds=2,
    min_rounds=2, stop_rule="fixed", max_new_tokens=6, crop_pixels=112,
)  # fmt: skip


@pytest.fixture(params=QWEN)
def qwen(request: pytest.FixtureRequest, tiny_vlm_factory: Callable[[str], TinyVLM]) -> TinyVLM:
    return tiny_vlm_factory(request.param)


def _ground(
    tiny: TinyVLM, config: EgrConfig, batch_tokens: int
) -> tuple[list[GroundedAnswer], Any]:
    egg = EntropyGradientGrounding(
        tiny.model, tiny.processor, tiny.adapter, config, batch_tokens=batch_tokens
    )
    return egg.ground(make_page(320, 420, seed=5), QUESTIONS), egg.stats


def _same(one: list[GroundedAnswer], many: list[GroundedAnswer]) -> None:
    for a, b in zip(one, many, strict=True):
        assert a.answer == b.answer
        assert a.stop_reason == b.stop_reason and a.extra["answer_round"] == b.extra["answer_round"]
        assert len(a.rounds) == len(b.rounds)
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            assert ra.crops == rb.crops
            assert [r.box for r in ra.regions] == [r.box for r in rb.regions]
            assert [r.score for r in ra.regions] == pytest.approx(
                [r.score for r in rb.regions], rel=1e-4
            )
            assert [r.peak for r in ra.regions] == [
                pytest.approx(r.peak, rel=1e-4) for r in rb.regions
            ]
            assert ra.entropy == pytest.approx(rb.entropy, rel=1e-4, abs=1e-5)
            for ga, gb in zip(ra.grids, rb.grids, strict=True):
                sa, sb = np.asarray(ga.scores), np.asarray(gb.scores)
                assert np.allclose(sa, sb, rtol=1e-3, atol=1e-4 * float(np.abs(sa).max()))
        assert [e.box for e in a.evidence] == [e.box for e in b.evidence]


def test_batched_rounds_match_one_question_at_a_time(qwen: TinyVLM) -> None:
    one, one_stats = _ground(qwen, CONFIG, batch_tokens=1)  # every batch holds one prompt
    many, many_stats = _ground(qwen, CONFIG, batch_tokens=1 << 20)
    _same(one, many)
    assert all(len(a.rounds) == 3 for a in many), "the config maps twice and forwards once"
    # 3 rounds x 4 questions one at a time; batched: one decoder call per round
    assert one_stats["batches"] == 12 and many_stats["batches"] == 3
    assert one_stats["backwards"] == many_stats["backwards"] == 8
    assert one_stats["vision_encodes"] == many_stats["vision_encodes"]


def test_plain_answers_are_batched_too(qwen: TinyVLM) -> None:
    plain = CONFIG.replace(max_rounds=0, min_rounds=0)
    one, one_stats = _ground(qwen, plain, batch_tokens=1)
    many, many_stats = _ground(qwen, plain, batch_tokens=1 << 20)
    assert [a.answer for a in one] == [a.answer for a in many]
    assert [a.entropy_before for a in one] == pytest.approx([a.entropy_before for a in many])
    assert (one_stats["batches"], many_stats["batches"]) == (4, 1)
    assert many_stats["vision_encodes"] == 1, "the page is encoded once for all its questions"


def test_a_batch_out_of_memory_is_split_not_failed(
    tiny_vlm_factory: Callable[[str], TinyVLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tiny_vlm_factory("qwen2_vl")
    reference, _ = _ground(tiny, CONFIG, batch_tokens=1)
    real = tiny.adapter.batch_next_token_logits
    sizes: list[int] = []

    def small_memory(model: Any, preps: Any, embeds: Any) -> torch.Tensor:
        sizes.append(len(preps))
        if len(preps) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, preps, embeds)

    monkeypatch.setattr(tiny.adapter, "batch_next_token_logits", small_memory)
    answers, stats = _ground(tiny, CONFIG, batch_tokens=1 << 20)
    _same(reference, answers)
    assert stats["batch_splits"] >= 2 and 4 in sizes and 2 in sizes


def test_a_batch_that_fails_otherwise_raises(
    tiny_vlm_factory: Callable[[str], TinyVLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tiny_vlm_factory("qwen2_vl")

    def broken(model: Any, preps: Any, embeds: Any) -> torch.Tensor:
        raise RuntimeError("shape mismatch in the decoder")

    monkeypatch.setattr(tiny.adapter, "batch_next_token_logits", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _ground(tiny, CONFIG, batch_tokens=1 << 20)


def test_summed_entropies_give_each_row_its_own_gradient(
    tiny_vlm_factory: Callable[[str], TinyVLM],
) -> None:
    tiny = tiny_vlm_factory("qwen2_5_vl")
    page = make_page(300, 400, seed=2)
    preps, embeds = [], []
    with torch.no_grad():
        for q in QUESTIONS[:3]:
            prep = tiny.adapter.prepare(tiny.processor, [page], q)
            feats = [tiny.adapter.encode_image(tiny.model, prep, 0)]
            preps.append(prep)
            embeds.append(tiny.adapter.embed(tiny.model, prep, feats))
    with frozen(tiny.model):
        together = entropy_gradients(
            lambda leaves: tiny.adapter.batch_next_token_logits(tiny.model, preps, leaves),
            embeds, [p.image_positions for p in preps], ["q"] * 3,
        )  # fmt: skip
        alone = [
            entropy_gradient(
                lambda e, p=p: tiny.adapter.next_token_logits(tiny.model, p, e),
                e,
                p.image_positions,
                "q",
            )
            for p, e in zip(preps, embeds, strict=True)
        ]
    for t, a in zip(together, alone, strict=True):
        assert t.entropy == pytest.approx(a.entropy, rel=1e-5)
        assert np.allclose(t.scores, a.scores, rtol=1e-3, atol=1e-6 * float(a.scores.max()))
    assert not np.allclose(together[0].scores, together[1].scores), "rows must differ"


def test_ranking_then_grounding_a_page_encodes_it_once(
    tiny_vlm_factory: Callable[[str], TinyVLM],
) -> None:
    tiny = tiny_vlm_factory("qwen2_vl")
    plain = CONFIG.replace(max_rounds=0, min_rounds=0)
    egg = EntropyGradientGrounding(tiny.model, tiny.processor, tiny.adapter, plain)
    page = make_page(320, 420, seed=7)
    entropies = egg.first_token_entropies(page, QUESTIONS)
    egg.ground(page.copy(), QUESTIONS[:2])  # same pixels, another image object
    egg.ground(page, QUESTIONS[2:])
    assert egg.stats["vision_encodes"] == 1
    other = make_page(320, 420, seed=8)
    egg.ground(other, QUESTIONS[:1])
    assert egg.stats["vision_encodes"] == 2, "a different page is encoded"
    answers = egg.ground(page, QUESTIONS)
    assert [a.entropy_before for a in answers] == pytest.approx(entropies, rel=1e-4)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_pages_questions_share_its_prefill(
    family: str, tiny_vlm_factory: Callable[[str], TinyVLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    from egr_core.adapters import _mrope

    tiny = tiny_vlm_factory(family)
    page = make_page(320, 420, seed=3)
    preps, embeds = [], []
    with torch.no_grad():
        feats = None
        for q in QUESTIONS:
            prep = tiny.adapter.prepare(tiny.processor, [page], q)
            feats = feats or [tiny.adapter.encode_image(tiny.model, prep, 0)]
            preps.append(prep)
            embeds.append(tiny.adapter.embed(tiny.model, prep, feats))
    shared = _mrope.shared_prefix(preps, embeds)
    assert shared > int(preps[0].image_positions.max()), "every question shares the page's tokens"
    assert _mrope.shared_prefix(preps[:1], embeds[:1]) == 0
    calls: list[int] = []
    real = tiny.adapter._prefix_cache

    def spy(model: Any, e: Any, positions: Any, k: int, rows: int) -> Any:
        calls.append(k)
        return real(model, e, positions, k, rows)

    monkeypatch.setattr(tiny.adapter, "_prefix_cache", spy)
    together = tiny.adapter.batch_generate_with_logits(tiny.model, tiny.processor, preps, embeds, 6)
    assert calls == [shared], "the prefix ran once for the four questions"
    alone = [
        tiny.adapter.generate_with_logits(tiny.model, tiny.processor, p, e, 6)
        for p, e in zip(preps, embeds, strict=True)
    ]
    assert len(calls) == 1, "a single prompt has nothing to share"
    for (ta, tl), (aa, al) in zip(together, alone, strict=True):
        assert ta == aa
        assert torch.allclose(tl, al, rtol=1e-4, atol=1e-4)
    # a different page in the batch: nothing shared, same answers
    other = tiny.adapter.prepare(tiny.processor, [make_page(320, 420, seed=4)], QUESTIONS[0])
    with torch.no_grad():
        other_embeds = tiny.adapter.embed(
            tiny.model, other, [tiny.adapter.encode_image(tiny.model, other, 0)]
        )
    assert _mrope.shared_prefix([preps[0], other], [embeds[0], other_embeds]) == 0
