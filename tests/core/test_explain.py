"""EntropyGradientGrounding on the analytic toy VLM (see egg_toy.py for the closed form)."""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from egg_toy import (
    FakeProcessor,
    ToyAdapter,
    ToyVLM,
    V,
    page_with_squares,
)

from egr_core import EgrConfig, EntropyGradientGrounding
from egr_core.errors import InputError, NonFiniteEntropyError, TokenLayoutMismatchError
from egr_core.targets import next_token_entropy
from egr_core.types import Box, Region, Status

RED = (128, 64, 192, 128)  # px on a 256 px page: cells rows 4..7, cols 8..11 (16 px patches)
RED_BOX = Box(0.5, 0.25, 0.75, 0.5)
DISTRACTOR = (16, 176, 48, 208)  # a smaller red square
BLUE = (32, 160, 64, 192)


def make(config: EgrConfig | None = None, adapter: ToyAdapter | None = None):
    model, processor = ToyVLM(), FakeProcessor()
    adapter = adapter or ToyAdapter()
    egg = EntropyGradientGrounding(model, processor, adapter, config or EgrConfig(crop_pixels=256))
    return egg, model, adapter


def iou(a: Box, b: Box) -> float:
    inter = a.intersection(b)
    return inter / (a.area + b.area - inter)


def dh_ds(s: float) -> float:
    """d/ds of the entropy of softmax(s * u), independently of the library (autograd on s)."""
    st = torch.tensor(s, requires_grad=True)
    u = torch.linspace(-3.0, 3.0, V)
    p = torch.softmax(st * u, dim=0)
    h = -(p * torch.log(p)).sum()
    (g,) = torch.autograd.grad(h, st)
    return float(g)


def test_relevance_is_exactly_the_asked_colour_with_closed_form_values() -> None:
    # red square covering cols 8..11 fully and half of col 12 (8 of 16 px)
    page = page_with_squares(256, [("R", (128, 64, 200, 128)), ("B", BLUE)])
    egg, _, _ = make(EgrConfig(crop_pixels=256, max_rounds=1))
    (ans,) = egg.ground(page, ["R"])
    grid = ans.rounds[0].grids[0]
    assert grid.scores.shape == (16, 16) and grid.source_box == Box.full()
    expected = np.zeros((16, 16))
    s = 16 * 1.0 + 4 * 0.5**2  # s = sum_t (F_t . q)^2, q = e_red
    expected[4:8, 8:12] = 2 * abs(dh_ds(s)) * 1.0
    expected[4:8, 12] = 2 * abs(dh_ds(s)) * 0.5
    np.testing.assert_allclose(grid.scores, expected, rtol=1e-4, atol=0)
    r, c = np.unravel_index(np.argmax(grid.scores), grid.scores.shape)
    assert 4 <= r <= 7 and 8 <= c <= 11
    assert ans.rounds[0].entropy == pytest.approx(
        float(next_token_entropy((s * torch.linspace(-3.0, 3.0, V))[None])[0]), rel=1e-5
    )


def test_zoom_loop_converges_on_the_top_region() -> None:
    page = page_with_squares(256, [("R", RED), ("R", DISTRACTOR), ("B", BLUE)])
    cfg = EgrConfig(crop_pixels=256, max_rounds=3, top_k=1, threshold="fraction")
    egg, _, _ = make(cfg)
    (ans,) = egg.ground(page, ["R"])
    r0 = ans.rounds[0]
    assert r0.crops == () and r0.regions[0].box == RED_BOX  # exactly the square's cells
    assert ans.stop_reason in ("se_increase", "max_rounds")
    accepted = ans.extra["accepted_round"]
    assert accepted >= 1  # cropping away the distractor made the map more focused
    ses = [ans.rounds[i].spatial_entropy for i in range(accepted + 1)]
    assert all(b < a for a, b in itertools.pairwise(ses))
    final_crops = [Box(*c) for c in ans.extra["final_crops"]]
    assert final_crops and all(c.contains(RED_BOX) for c in final_crops)
    distractor = Box(16 / 256, 176 / 256, 48 / 256, 208 / 256)
    assert all(c.intersection(distractor) == 0 for c in final_crops)
    top = ans.evidence[0]  # what the answer was read through: a final crop and its region
    assert top.crop == final_crops[0] and top.crop.contains(RED_BOX)
    assert top.round == accepted - 1  # the region the crop was cut for
    assert iou(top.box, RED_BOX) > 0.8
    assert ans.entropy_after < ans.entropy_before
    assert ans.status is Status.OK and len(ans.evidence) == 1


def test_elbow_rule_also_zooms_onto_the_square() -> None:
    page = page_with_squares(256, [("R", RED), ("R", DISTRACTOR)])
    egg, _, _ = make(EgrConfig(crop_pixels=256, max_rounds=2, top_k=1))
    (ans,) = egg.ground(page, ["R"])
    assert ans.rounds[0].regions[0].box.contains(RED_BOX)
    assert ans.evidence[0].box.contains(RED_BOX) or iou(ans.evidence[0].box, RED_BOX) > 0.5


def test_page_encoded_once_for_many_questions_and_each_crop_once() -> None:
    page = page_with_squares(256, [("R", RED), ("B", BLUE)])
    egg, _, adapter = make(EgrConfig(crop_pixels=256, max_rounds=2))
    answers = egg.ground(page, ["R", "B", "R please", "RB", "nothing"])
    assert len(answers) == 5
    page_key = adapter.encoded_keys[0]
    assert adapter.encoded_keys.count(page_key) == 1
    assert len(adapter.encoded_keys) == len(set(adapter.encoded_keys))  # every image once
    assert egg.stats["vision_encodes"] == len(adapter.encoded_keys)
    assert egg.stats["encode_cache_hits"] >= 4
    assert egg.stats["backwards"] == sum(len(a.rounds) for a in answers)


def test_plain_mode_through_the_same_api() -> None:
    page = page_with_squares(256, [("R", RED)])
    egg, _, _ = make(EgrConfig(max_rounds=0))
    (ans,) = egg.ground(page, ["R"])
    assert ans.stop_reason == "plain" and ans.rounds == () and ans.evidence == ()
    assert ans.entropy_before == ans.entropy_after
    assert ans.answer and egg.stats["backwards"] == 0
    assert {"prepare_ms", "encode_ms", "forward_ms", "generate_ms", "total_ms"} <= set(
        ans.timings_ms
    )


def test_question_the_image_cannot_answer_gives_no_evidence() -> None:
    page = page_with_squares(256, [("R", RED)])
    egg, _, _ = make()
    (ans,) = egg.ground(page, ["what is this?"])  # no R/G/B: s = 0, uniform logits
    assert ans.entropy_before == pytest.approx(math.log(V), rel=1e-6)
    assert ans.stop_reason == "no_region" and ans.status is Status.NO_EVIDENCE
    assert ans.evidence == () and math.isinf(ans.rounds[0].spatial_entropy)


def test_first_token_entropy_matches_round_zero_without_backward() -> None:
    page = page_with_squares(256, [("R", RED)])
    egg, _, _ = make()
    h = egg.first_token_entropy(page, "R")
    assert egg.stats["backwards"] == 0
    (ans,) = egg.ground(page, ["R"])
    assert h == pytest.approx(ans.entropy_before, rel=1e-6)


def _snapshot(model: torch.nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def _assert_pristine(model: torch.nn.Module, snap) -> None:
    assert _snapshot(model) == snap
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not m._backward_hooks and not m._backward_pre_hooks
    mod = torch.nn.modules.module
    assert not mod._global_forward_hooks and not mod._global_forward_pre_hooks
    assert not mod._global_backward_hooks
    assert torch.is_grad_enabled()


def test_model_unchanged_after_success_and_after_a_raising_forward() -> None:
    page = page_with_squares(256, [("R", RED)])
    egg, model, _ = make(EgrConfig(crop_pixels=256, max_rounds=2))
    model.train()
    model.embed_tokens.weight.requires_grad_(False)  # a mixed pattern to restore
    snap = _snapshot(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    egg.ground(page, ["R", "B"])
    _assert_pristine(model, snap)
    assert not any(model.encode_grad_modes)  # the vision tower ran under no_grad
    model.explode = True
    with pytest.raises(RuntimeError, match="exploded"):
        egg.ground(page, ["R"])
    _assert_pristine(model, snap)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)


def test_token_layout_mismatch_names_both_numbers() -> None:
    class Dropping(ToyAdapter):
        def prepare(self, processor, images, question):
            prep = super().prepare(processor, images, question)
            return type(prep)(**{**prep.__dict__, "image_positions": prep.image_positions[:-3]})

    egg, _, _ = make(adapter=Dropping())
    with pytest.raises(TokenLayoutMismatchError) as e:
        egg.ground(page_with_squares(256), ["R"])
    assert "253" in str(e.value) and "256" in str(e.value)


def test_non_finite_entropy_raises() -> None:
    egg, model, _ = make()
    with torch.no_grad():
        model.head[3] = float("nan")
    with pytest.raises(NonFiniteEntropyError, match="question 'q0'"):
        egg.ground(page_with_squares(256, [("R", RED)]), ["R"])


def test_input_errors() -> None:
    egg, _, _ = make()
    page = page_with_squares(256)
    with pytest.raises(InputError, match="empty"):
        egg.ground(page, ["   "])
    with pytest.raises(InputError, match="no questions"):
        egg.ground(page, [])
    with pytest.raises(InputError, match=r"8x8 px.*minimum side 16"):
        egg.ground(page.resize((8, 8)), ["R"])


def test_config_defaults_hash_and_timings_are_recorded() -> None:
    class Sharp(ToyAdapter):
        config_defaults: ClassVar[dict[str, Any]] = {"sigma": 2.5, "threshold": "fraction"}

    egg = EntropyGradientGrounding(ToyVLM(), FakeProcessor(), Sharp())
    assert egg.config.sigma == 2.5 and egg.config.threshold == "fraction"
    assert egg.config_hash == EgrConfig(sigma=2.5, threshold="fraction").config_hash()
    assert egg.config_hash != EgrConfig().config_hash()
    (ans,) = egg.ground(page_with_squares(256, [("R", RED)]), ["R"])
    assert ans.extra["config_hash"] == egg.config_hash
    for key in ("prepare_ms", "encode_ms", "relevance_ms", "regions_ms", "generate_ms"):
        assert ans.timings_ms[key] >= 0
    assert all("relevance_ms" in r.timings_ms for r in ans.rounds)


def test_legible_windows_hold_the_target_and_are_the_evidence() -> None:
    # a 256 px page standing for a 512 x 512 pt page; windows of 64 x 48 pt at 2 px/pt
    page = page_with_squares(256, [("R", RED), ("R", DISTRACTOR), ("B", BLUE)])
    cfg = EgrConfig(
        crop_pixels=128, legible_scale=2.0, crop_window_pt=48.0, crop_pad=0.0, top_k=1,
        max_rounds=2, stop_rule="fixed", threshold="fraction",
    )  # fmt: skip
    egg, _, _ = make(cfg)
    (ans,) = egg.ground(page, ["R"], page_size_pt=(512.0, 512.0))
    r1 = ans.rounds[1]
    assert r1.crops, "round 1 was fed crops"
    for c in r1.crops:  # every window: 64 x 48 pt, inside the page
        assert c.width * 512 == pytest.approx(64.0) and c.height * 512 == pytest.approx(48.0)
    peak = ans.rounds[0].regions[0].peak
    assert peak is not None and RED_BOX.x0 <= peak[0] <= RED_BOX.x1
    assert RED_BOX.y0 <= peak[1] <= RED_BOX.y1  # the map peaks on the asked square
    assert r1.crops[0].x0 < peak[0] < r1.crops[0].x1 and r1.crops[0].y0 < peak[1] < r1.crops[0].y1
    # the evidence is what the answer was read through: the answering round's crops
    chosen = ans.extra["answer_round"]
    assert chosen >= 1 and [e.crop for e in ans.evidence] == list(ans.rounds[chosen].crops)
    assert all(e.crop is not None and e.round == chosen - 1 for e in ans.evidence)
    assert ans.evidence[0].crop.intersection(RED_BOX) > 0
    # the last round ran without a map (nothing reads it): one backward fewer than forwards
    assert not ans.rounds[-1].grids
    assert egg.stats["backwards"] == egg.stats["forwards"] - 1


def test_a_round_feeds_at_most_four_legible_windows() -> None:
    page = page_with_squares(256, [("R", RED), ("R", DISTRACTOR), ("R", BLUE)])
    cfg = EgrConfig(
        crop_pixels=64, legible_scale=2.0, crop_window_pt=24.0, crop_pad=0.5, top_k=3,
        max_rounds=1, stop_rule="fixed", threshold="fraction", threshold_fraction=0.1,
    )  # fmt: skip
    egg, _, _ = make(cfg)
    (ans,) = egg.ground(page, ["R"], page_size_pt=(512.0, 512.0))
    assert 1 <= len(ans.rounds[1].crops) <= 4


class _ByHeight(ToyAdapter):
    """Answers "h<pixel height of the last image>"; scores a candidate "h<X>" under a view whose
    last image is h px tall as -|X - h| (so the summed score is best at the views' median)."""

    def generate(self, model: Any, processor: Any, prepared: Any, embeds: Any, n: int) -> str:
        return f"h{prepared.image_sizes[-1][1]}"

    def answer_logprob(self, model: Any, prepared: Any, embeds: Any, ids: torch.Tensor) -> float:
        text = "".join(chr(int(i)) for i in ids)
        return -abs(float(text[1:]) - prepared.image_sizes[-1][1])


class _CharProcessor(FakeProcessor):
    class tokenizer:  # the attribute name processors use
        def __new__(cls, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text]}


def _views_config(**knobs: Any) -> EgrConfig:
    return EgrConfig(
        crop_pixels=128, legible_scale=2.0, crop_window_pt=48.0, crop_pad=0.0, top_k=1,
        max_rounds=1, min_rounds=1, stop_rule="fixed", threshold="fraction", max_windows=1,
        **knobs,
    )  # fmt: skip


def test_read_scales_answer_with_the_candidate_all_views_like_best() -> None:
    # windows 48 pt tall: 96 px at the legible scale (2 px/pt), 48 px at x0.5, 72 px at x0.75;
    # each view answers its own height; summed -|X - h| is best at the median view, x0.75's 72
    page = page_with_squares(256, [("R", RED), ("B", BLUE)])
    egg = EntropyGradientGrounding(
        ToyVLM(), _CharProcessor(), _ByHeight(), _views_config(read_scales=(0.5, 0.75))
    )
    (ans,) = egg.ground(page, ["R"], page_size_pt=(512.0, 512.0))
    views = ans.extra["read_views"]
    assert [(v["scale"], v["answer"]) for v in views] == [(1.0, "h96"), (0.5, "h48"), (0.75, "h72")]
    heights = (96, 48, 72)
    totals = {a: -sum(abs(int(a[1:]) - h) for h in heights) for a in ("h96", "h48", "h72")}
    assert ans.answer == max(totals, key=lambda a: totals[a]) == "h72"
    assert [v["logprob"] for v in views] == [totals["h96"], totals["h48"], totals["h72"]]
    assert ans.answer_logprob == pytest.approx(totals["h72"] / 3)  # the kept one's, per view
    # the evidence is still the window at the legible scale; the timing is reported apart
    (crop,) = ans.rounds[1].crops
    assert [e.crop for e in ans.evidence] == [crop] and crop.height * 512 == pytest.approx(48.0)
    assert ans.timings_ms["reread_ms"] >= 0 and egg.stats["reread_views"] == 2
    # one read without read_scales: the legible scale's own answer, no views recorded
    plain = EntropyGradientGrounding(ToyVLM(), _CharProcessor(), _ByHeight(), _views_config())
    (one,) = plain.ground(page, ["R"], page_size_pt=(512.0, 512.0))
    assert (
        one.answer == "h96" and "read_views" not in one.extra and "reread_ms" not in one.timings_ms
    )


def test_read_on_given_evidence_uses_the_same_views() -> None:
    page = page_with_squares(256, [("R", RED)])
    egg = EntropyGradientGrounding(
        ToyVLM(), _CharProcessor(), _ByHeight(), _views_config(read_scales=(0.5, 0.75))
    )
    truth = Region(RED_BOX, 1.0, 0, 0, peak=(0.625, 0.375))
    assert egg.read(page, "R", [truth], page_size_pt=(512.0, 512.0)) == "h72"
    single = EntropyGradientGrounding(ToyVLM(), _CharProcessor(), _ByHeight(), _views_config())
    assert single.read(page, "R", [truth], page_size_pt=(512.0, 512.0)) == "h96"
    with pytest.raises(InputError, match="evidence"):
        egg.read(page, "R", [])


def test_read_scales_need_an_adapter_that_scores_answers() -> None:
    with pytest.raises(ValueError, match=r"answer_logprob.*ToyAdapter"):
        EntropyGradientGrounding(
            ToyVLM(), FakeProcessor(), ToyAdapter(), _views_config(read_scales=(0.9,))
        )


class _CountsImages(ToyAdapter):
    """Answers how many images its prompt holds."""

    def generate(self, model: Any, processor: Any, prepared: Any, embeds: Any, n: int) -> str:
        return f"n{len(prepared.image_sizes)}"


def test_answer_page_off_reads_the_answering_crops_alone() -> None:
    page = page_with_squares(256, [("R", RED), ("B", BLUE)])
    truth = Region(RED_BOX, 1.0, 0, 0, peak=(0.625, 0.375))
    for answer_page, expected in ((True, "n2"), (False, "n1")):
        egg = EntropyGradientGrounding(
            ToyVLM(), FakeProcessor(), _CountsImages(), _views_config(answer_page=answer_page)
        )
        (ans,) = egg.ground(page, ["R"], page_size_pt=(512.0, 512.0))
        assert ans.answer == expected and len(ans.rounds[1].crops) == 1
        # crops alone at the legible scale only: one view, read but not scored
        reads = ans.extra.get("read_views")
        assert (reads is None) == answer_page and ans.answer_logprob is None
        if reads:
            assert [(v["answer"], v["logprob"]) for v in reads] == [(expected, None)]
        assert ans.rounds[0].grids and len(ans.rounds[0].grids) == 1  # the map saw the page
        assert egg.read(page, "R", [truth], page_size_pt=(512.0, 512.0)) == expected
    # crops alone at several scales: every view is a crops-only prompt
    egg = EntropyGradientGrounding(
        ToyVLM(),
        _CharProcessor(),
        _ByHeight(),
        _views_config(answer_page=False, read_scales=(0.5, 0.75)),
    )
    (ans,) = egg.ground(page, ["R"], page_size_pt=(512.0, 512.0))
    assert [(v["scale"], v["page"]) for v in ans.extra["read_views"]] == [
        (1.0, False),
        (0.5, False),
        (0.75, False),
    ]
    assert ans.answer == "h72"
