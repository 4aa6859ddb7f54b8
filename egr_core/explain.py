"""Entropy-Gradient Grounding over a model you hand it (method.md; the captum-style method object).

``EntropyGradientGrounding(model, processor, adapter, config).ground(page, questions, crop_fn)``
returns one :class:`~egr_core.types.GroundedAnswer` per question. It never loads anything.

Guarantees:
- the vision tower runs under ``no_grad``, once per distinct input image per ``ground`` call (the
  page view and any crop two questions share are encoded once; keys are
  ``PreparedInputs.cache_keys``);
- the HF image preprocessing (resize, tiles, patchify) also runs once per distinct image per call:
  a per-call :class:`~egr_core.adapters.base.ImageCache` is handed to ``adapter.prepare``, so only
  the text side is redone per question and round;
- the questions of a page run in lockstep, round by round (:func:`egr_core.zoom.zoom_steps`), so
  each round of all of them is one batch: one decoder forward and one entropy backward, one
  batched decode for the answers (:mod:`egr_core.rounds`; adapters without batching run the same
  steps one prompt at a time);
- gradients reach only a detached copy of the decoder input embeddings (``torch.autograd.grad``);
  parameters are frozen for the call and the model's training flags and ``requires_grad`` flags are
  restored afterwards, also when the call raises; no hooks are registered.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image

from egr_core import regions
from egr_core.adapters import VLMAdapter, get_adapter
from egr_core.adapters.base import ImageCache, pixel_digest
from egr_core.answer_step import AnswerStep
from egr_core.config import EgrConfig
from egr_core.errors import InputError
from egr_core.imaging import CropFn, crops_of_regions, raster_crop_fn
from egr_core.relevance import frozen
from egr_core.rounds import (
    DEFAULT_BATCH_TOKENS,
    PREPROCESS_CACHE_SIZE,
    Ask,
    PageCall,
    RoundData,
    RoundRunner,
    ms,
)
from egr_core.types import Box, GroundedAnswer, Question, Region, Status, ZoomRound
from egr_core.zoom import RoundOutcome, Step, ZoomSteps, ZoomTrail, answer_round, zoom_steps

__all__ = ["EntropyGradientGrounding", "frozen"]

#: Smallest image side (px) accepted when the adapter does not declare ``min_image_side``.
DEFAULT_MIN_IMAGE_SIDE = 28
#: Most legible windows cut in one round in all (one region's are ``EgrConfig.max_windows``).
MAX_CROPS_PER_ROUND = 4
#: Pages whose preprocessing and vision features outlive a call (ranking a page, then grounding
#: its questions in batches, encode it once).
PAGES_KEPT = 2


class EntropyGradientGrounding:
    """EGG over a model, processor and adapter (see module docstring).

    Args:
        model: a loaded VLM (e.g. from :func:`egr_core.loading.load_vlm`).
        processor: its processor.
        adapter: the VLMAdapter; looked up from ``model.config.model_type`` when None.
        config: the knobs; when None, ``EgrConfig`` with the adapter's ``config_defaults``.
        batch_tokens: most prompt tokens run as one batch (memory, not method: not hashed).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        adapter: VLMAdapter | None = None,
        config: EgrConfig | None = None,
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        self.model = model
        self.processor = processor
        self.adapter = adapter if adapter is not None else get_adapter(model)
        defaults = dict(getattr(self.adapter, "config_defaults", {}) or {})
        self.config = config if config is not None else EgrConfig.for_adapter(defaults)
        mt = getattr(getattr(model, "config", None), "model_type", None)
        self.model_type = mt if isinstance(mt, str) else type(self.adapter).__name__
        self.min_image_side = int(getattr(self.adapter, "min_image_side", DEFAULT_MIN_IMAGE_SIDE))
        try:
            params = inspect.signature(self.adapter.prepare).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        #: counts: vision_encodes, encode_cache_hits, forwards, backwards, generations, crops,
        #: batches (decoder calls), batch_splits (batches retried smaller after running out of
        #: memory).
        self.stats: Counter[str] = Counter()
        self._pages: OrderedDict[Any, tuple[ImageCache, dict[Any, torch.Tensor]]] = OrderedDict()
        self.steps = RoundRunner(
            model, processor, self.adapter, self.config,
            model_type=self.model_type, min_image_side=self.min_image_side,
            # adapters without the per-call preprocessing cache are called without it
            prepare_takes_cache="cache" in params, stats=self.stats, batch_tokens=batch_tokens,
        )  # fmt: skip
        self.answer_step = AnswerStep(self.steps, self.stats)

    @property
    def config_hash(self) -> str:
        return self.config.config_hash()

    # ------------------------------------------------------------------ public verbs
    def ground(
        self,
        page: Image.Image,
        questions: Sequence[Question | str],
        crop_fn: CropFn | None = None,
        page_size_pt: tuple[float, float] | None = None,
    ) -> list[GroundedAnswer]:
        """Answer every question about one page view, with evidence (or plainly if max_rounds=0);
        the questions run together, one batch per round.

        Args:
            page: the page view (PIL image).
            questions: Question objects or plain strings (ids "q0", "q1", ... are assigned).
            crop_fn: ``(page_box, long_side_px) -> image``; defaults to a raster crop of ``page``.
            page_size_pt: the page's (width, height) in PDF points, for crops at the model's
                legible scale (``EgrConfig.legible_scale``); when None, one page-image pixel
                counts as one point.

        Raises:
            InputError: empty question, no questions, or an image too small for the processor.
            TokenLayoutMismatchError, NonFiniteEntropyError: see the adapter contract.
        """
        qs = self._questions(questions)
        self._check_image(page, "page image")
        pt = page_size_pt or (float(page.width), float(page.height))
        call = self._page_call(page, crop_fn or raster_crop_fn(page), pt)
        with frozen(self.model):
            if self.config.max_rounds == 0:
                return self._plain(call, qs)
            return self._grounded(call, qs)

    def read(
        self,
        page: Image.Image,
        question: Question | str,
        evidence: Sequence[Region],
        crop_fn: CropFn | None = None,
        page_size_pt: tuple[float, float] | None = None,
    ) -> str:
        """EGG's answer step on given evidence, no map: ``question`` over [page, the crops the
        config cuts for ``evidence`` (regions with peaks)], or as ``answer_page``/``read_scales``
        say. For the benchmark's oracle crop and for re-reading stored evidence."""
        (q,) = self._questions([question])
        self._check_image(page, "page image")
        if not evidence:
            raise InputError("read() needs at least one evidence region")
        pt = page_size_pt or (float(page.width), float(page.height))
        call = self._page_call(page, crop_fn or raster_crop_fn(page), pt)
        pairs = self._next_crops(call, evidence)
        crops = tuple(b for b, _ in pairs)
        with frozen(self.model):  # one read of [page, crops] when no knob asks for more
            return self.answer_step.read(call, q, crops, dict(pairs), None, None)[0]

    def first_token_entropy(self, page: Image.Image, question: Question | str) -> float:
        """First-answer-token entropy for [page] + question: one forward, no backward."""
        return self.first_token_entropies(page, [question])[0]

    def first_token_entropies(
        self, page: Image.Image, questions: Sequence[Question | str]
    ) -> list[float]:
        """:meth:`first_token_entropy` of several questions about one page, as one batch."""
        qs = self._questions(questions)
        self._check_image(page, "page image")
        call = self._page_call(page, raster_crop_fn(page), (page.width, page.height))
        with frozen(self.model):
            rounds = self.steps.forwards(call, [Ask(q, (), 0) for q in qs], with_answer=False)
        return [r.entropy for r in rounds]

    # ------------------------------------------------------------------ steps
    def _questions(self, questions: Sequence[Question | str]) -> list[Question]:
        if isinstance(questions, (str, Question)):
            questions = [questions]
        if not questions:
            raise InputError("no questions given")
        out = []
        for i, q in enumerate(questions):
            if isinstance(q, Question):
                out.append(q)
            elif isinstance(q, str) and q.strip():
                out.append(Question(f"q{i}", q.strip()))
            else:
                raise InputError(f"question {i} is empty or not a string: {q!r}")
        return out

    def _check_image(self, image: Any, what: str) -> None:
        if not isinstance(image, Image.Image):
            raise InputError(f"{what} must be a PIL image, got {type(image).__name__}")
        if min(image.size) < self.min_image_side:
            raise InputError(
                f"{what} is {image.width}x{image.height} px, too small for the {self.model_type} "
                f"processor (minimum side {self.min_image_side} px)"
            )

    def _page_call(
        self, page: Image.Image, crop_fn: CropFn, page_pt: tuple[float, float]
    ) -> PageCall:
        """A call's state for ``page``; the preprocessing and vision features of the last
        :data:`PAGES_KEPT` pages (by pixel content) carry over, so ranking a page and grounding
        its questions in several batches encode it once. Crops are cut afresh per call."""
        rgb = page.convert("RGB")
        key = pixel_digest(rgb)
        shared = self._pages.pop(key, None) or (ImageCache(PREPROCESS_CACHE_SIZE), {})
        self._pages[key] = shared
        while len(self._pages) > PAGES_KEPT:
            self._pages.popitem(last=False)
        shared[0].remember(rgb, key)  # the processor's cache need not hash the page again
        return PageCall(rgb, crop_fn, page_pt, images=shared[0], features=shared[1])

    def _plain(self, call: PageCall, qs: list[Question]) -> list[GroundedAnswer]:
        """The baseline: [page] + question, answered from one prefill per question."""
        datas = self.steps.forwards(call, [Ask(q, (), 0) for q in qs], with_answer=True)
        late = iter(self.steps.generate([d for d in datas if d.answer is None]))
        out = []
        for q, data in zip(qs, datas, strict=True):
            timings = dict(data.timings_ms)
            if data.answer is None:
                answer, timings["generate_ms"] = next(late)
            else:  # one prefill gave the entropy and the answer
                answer, timings["generate_ms"] = data.answer, 0.0
            timings["total_ms"] = sum(timings.values())
            out.append(
                GroundedAnswer(
                    question_id=q.question_id,
                    question=q.text,
                    answer=answer,
                    status=Status.OK,
                    entropy_before=data.entropy,
                    entropy_after=data.entropy,
                    rounds=(),
                    evidence=(),
                    stop_reason="plain",
                    timings_ms=timings,
                    extra={"config_hash": self.config_hash},
                )
            )
        return out

    def _next_crops(self, call: PageCall, top: Sequence[Region]) -> tuple[tuple[Box, Region], ...]:
        """The crops of the next round, each with the region it was cut for, in rank order."""
        cfg = self.config
        aspect = call.page.width / call.page.height
        out = crops_of_regions(top, cfg, call.page_pt, aspect)
        cap = max(cfg.top_k, MAX_CROPS_PER_ROUND if cfg.legible_scale is not None else cfg.top_k)
        return tuple(out.items())[:cap]

    def _grounded(self, call: PageCall, qs: list[Question]) -> list[GroundedAnswer]:
        """Every question's zoom loop, advanced in lockstep: each round of all the questions that
        need one is a batch of maps (or of light forwards), then the answers are one batch."""
        cfg = self.config
        sources: list[dict[Box, Region]] = [{} for _ in qs]  # crop -> the region it was cut for

        def crops_for(i: int) -> Any:
            def next_crops(top: Sequence[Region]) -> tuple[Box, ...]:
                pairs = self._next_crops(call, top)
                sources[i].update(pairs)
                return tuple(b for b, _ in pairs)

            return next_crops

        # the light (last) round is the answer round for sure when it is the only candidate
        sure = cfg.answer_round == "last" or cfg.min_rounds >= cfg.max_rounds
        sure = sure and cfg.answer_page  # else the answer step reads the crops alone anyway
        loops: list[ZoomSteps[RoundData]] = [
            zoom_steps(
                crops_for(i),
                cfg.max_rounds,
                rule=cfg.stop_rule,
                tau=cfg.stop_tau,
                min_rounds=cfg.min_rounds,
                light=True,
            )
            for i in range(len(qs))
        ]
        pending: dict[int, Step] = {i: next(loop) for i, loop in enumerate(loops)}
        trails: dict[int, ZoomTrail[RoundData]] = {}
        while pending:
            outcomes: dict[int, RoundOutcome[RoundData]] = {}
            maps = [i for i, s in pending.items() if not s.light]
            asks = [Ask(qs[i], pending[i].crops, pending[i].round) for i in maps]
            for i, data in zip(maps, self.steps.maps(call, asks), strict=True):
                t = time.perf_counter()
                top, se = regions.top_regions(data.grids, cfg, pending[i].round)
                data.timings_ms["regions_ms"] = ms(t)
                outcomes[i] = RoundOutcome(pending[i].crops, tuple(top), se, data, data.entropy)
            lights = [i for i, s in pending.items() if s.light]
            asks = [Ask(qs[i], pending[i].crops, pending[i].round) for i in lights]
            for i, data in zip(lights, self.steps.forwards(call, asks, sure), strict=True):
                outcomes[i] = RoundOutcome(pending[i].crops, (), float("nan"), data, data.entropy)
            for i, outcome in outcomes.items():
                try:
                    pending[i] = loops[i].send(outcome)
                except StopIteration as done:
                    trails[i] = done.value
                    del pending[i]
        chosen = [answer_round(trails[i], cfg.answer_round, cfg.min_rounds) for i in range(len(qs))]
        finals = [trails[i].rounds[c].payload for i, c in enumerate(chosen)]
        reread = [
            self.answer_step.active and bool(trails[i].rounds[c].crops)
            for i, c in enumerate(chosen)
        ]
        # the answering round's own answer, unless the answer step reads its crops alone
        own = [
            f.answer is None and not (r and not cfg.answer_page)
            for f, r in zip(finals, reread, strict=True)
        ]
        late = iter(self.steps.generate([f for f, o in zip(finals, own, strict=True) if o]))
        answers = [
            (f.answer, 0.0) if f.answer is not None else next(late) if o else ("", 0.0)
            for f, o in zip(finals, own, strict=True)
        ]  # 0 ms: answered in its prefill (or not at all: read again below)
        reads: list[tuple[list[dict[str, Any]], float]] = [([], 0.0) for _ in qs]
        for i, q in enumerate(qs):
            crops = trails[i].rounds[chosen[i]].crops
            if reread[i]:
                text, took, views = self.answer_step.read(
                    call, q, crops, sources[i], finals[i], answers[i][0]
                )
                answers[i], reads[i] = (text, answers[i][1]), (views, took)
        return [
            self._answer(q, trails[i], chosen[i], answers[i], sources[i], reads[i])
            for i, q in enumerate(qs)
        ]

    def _answer(
        self,
        q: Question,
        trail: ZoomTrail[RoundData],
        chosen: int,
        answer: tuple[str, float],
        sources: dict[Box, Region],
        reads: tuple[list[dict[str, Any]], float],
    ) -> GroundedAnswer:
        """One question's result: its rounds, the answering round's evidence and its timings."""
        final = trail.rounds[chosen]
        rounds = tuple(
            ZoomRound(
                round=i,
                crops=o.crops,
                grids=o.payload.grids,
                regions=o.regions,
                spatial_entropy=o.spatial_entropy,
                entropy=o.payload.entropy,
                timings_ms=dict(o.payload.timings_ms),
            )
            for i, o in enumerate(trail.rounds)
        )
        if final.crops:  # what the answer was read through: the crops, with their regions
            evidence = tuple(replace(sources[b], crop=b) for b in final.crops)
        else:
            evidence = final.regions
        totals: dict[str, float] = {}
        for r in rounds:
            for k, v in r.timings_ms.items():
                totals[k] = totals.get(k, 0.0) + v
        totals["generate_ms"] = answer[1]
        if reads[0]:  # read_scales: the other views' crops, answers and scoring
            totals["reread_ms"] = reads[1]
        totals["total_ms"] = sum(totals.values())
        return GroundedAnswer(
            question_id=q.question_id,
            question=q.text,
            answer=answer[0],
            status=Status.OK if evidence else Status.NO_EVIDENCE,
            entropy_before=rounds[0].entropy,
            entropy_after=final.payload.entropy,
            rounds=rounds,
            evidence=evidence,
            stop_reason=trail.stop_reason,
            timings_ms=totals,
            extra={
                "accepted_round": trail.accepted,
                "answer_round": chosen,
                "final_crops": [b.as_tuple() for b in final.crops],
                "config_hash": self.config_hash,
                **({"read_views": reads[0]} if reads[0] else {}),
            },
        )
