"""Entropy-Gradient Grounding over a model you hand it (method.md; the captum-style method object).

``EntropyGradientGrounding(model, processor, adapter, config).ground(page, questions, crop_fn)``
returns one :class:`~egr_core.types.GroundedAnswer` per question. It never loads anything.

Guarantees:
- the vision tower runs under ``no_grad``, once per distinct input image per ``ground`` call (the
  page view is shared by every question; keys are ``PreparedInputs.cache_keys``);
- the HF image preprocessing (resize, tiles, patchify) also runs once per distinct image per call:
  a per-call :class:`~egr_core.adapters.base.ImageCache` is handed to ``adapter.prepare``, so only
  the text side is redone per question and round;
- gradients reach only a detached copy of the decoder input embeddings (``torch.autograd.grad``);
  parameters are frozen for the call and the model's training flags and ``requires_grad`` flags are
  restored afterwards, also when the call raises; no hooks are registered.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image

from egr_core import layout, regions
from egr_core.adapters import PreparedInputs, VLMAdapter, get_adapter
from egr_core.adapters.base import ImageCache
from egr_core.config import EgrConfig
from egr_core.errors import InputError, TokenLayoutMismatchError
from egr_core.imaging import CropFn, crop_long_side, raster_crop_fn, region_crops
from egr_core.relevance import entropy_gradient, frozen
from egr_core.targets import check_finite, next_token_entropy
from egr_core.types import Box, GroundedAnswer, Question, Region, RelevanceGrid, Status, ZoomRound
from egr_core.zoom import RoundOutcome, answer_round, zoom_loop

#: Smallest image side (px) accepted when the adapter does not declare ``min_image_side``.
DEFAULT_MIN_IMAGE_SIDE = 28
#: Most legible windows cut for one region wider than a window, and for one round in all.
MAX_WINDOWS_PER_REGION = 3
MAX_CROPS_PER_ROUND = 4
#: Preprocessed images kept per ``ground`` call (page + K crops per round for several rounds).
PREPROCESS_CACHE_SIZE = 32


@dataclass
class _Call:
    """Per-``ground`` state: preprocessing, encode and crop caches (they die with the call)."""

    page: Image.Image
    crop_fn: CropFn
    #: the page's size in points (legible-scale crops); the page image's pixels when unknown
    page_pt: tuple[float, float]
    images: ImageCache = field(default_factory=lambda: ImageCache(PREPROCESS_CACHE_SIZE))
    features: dict[Any, torch.Tensor] = field(default_factory=dict)
    crops: dict[tuple[float, ...], Image.Image] = field(default_factory=dict)


@dataclass(frozen=True)
class _RoundData:
    prepared: PreparedInputs
    embeds: torch.Tensor  # (1, T, D) detached
    entropy: float
    grids: tuple[RelevanceGrid, ...]
    timings_ms: dict[str, float]
    answer: str | None = None  # generated with the round's prefill, when it was sure to answer


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class EntropyGradientGrounding:
    """EGG over a model, processor and adapter (see module docstring).

    Args:
        model: a loaded VLM (e.g. from :func:`egr_core.loading.load_vlm`).
        processor: its processor.
        adapter: the VLMAdapter; looked up from ``model.config.model_type`` when None.
        config: the knobs; when None, ``EgrConfig`` with the adapter's ``config_defaults``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        adapter: VLMAdapter | None = None,
        config: EgrConfig | None = None,
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
        #: whether ``adapter.prepare`` takes the per-call preprocessing cache (optional in the
        #: protocol; adapters without it are called as before).
        self._prepare_takes_cache = "cache" in params
        #: counts: vision_encodes, encode_cache_hits, forwards, backwards, generations, crops.
        self.stats: Counter[str] = Counter()

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
        """Answer every question about one page view, with evidence (or plainly if max_rounds=0).

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
        call = _Call(page.convert("RGB"), crop_fn or raster_crop_fn(page), pt)
        with frozen(self.model):
            return [self._ground_one(call, q) for q in qs]

    def first_token_entropy(self, page: Image.Image, question: Question | str) -> float:
        """First-answer-token entropy for [page] + question: one forward, no backward."""
        (q,) = self._questions([question])
        self._check_image(page, "page image")
        call = _Call(page.convert("RGB"), raster_crop_fn(page), (page.width, page.height))
        with frozen(self.model), torch.no_grad():
            prep, embeds, _ = self._embed(call, [call.page], q.text)
            logits = self.adapter.next_token_logits(self.model, prep, embeds)  # (1, V)
            self.stats["forwards"] += 1
            return check_finite(next_token_entropy(logits)[0], f"question {q.question_id!r}")

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

    def _crop(self, call: _Call, box: Box) -> Image.Image:
        size = call.page_pt if self.config.legible_scale is not None else call.page.size
        long_side = crop_long_side(box, size, self.config)
        key = (*box.as_tuple(), long_side)
        if key not in call.crops:
            img = call.crop_fn(box, long_side).convert("RGB")
            if min(img.size) < self.min_image_side:  # a thin crop: upscale, geometry unchanged
                s = self.min_image_side / min(img.size)
                img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
            call.crops[key] = img
            self.stats["crops"] += 1
        return call.crops[key]

    def _embed(
        self, call: _Call, images: list[Image.Image], text: str
    ) -> tuple[PreparedInputs, torch.Tensor, dict[str, float]]:
        """Prepare, encode (cached, no_grad), check counts and scatter: (1, T, D) embeddings."""
        t = time.perf_counter()
        if self._prepare_takes_cache:
            hits = call.images.hits
            prep = self.adapter.prepare(self.processor, images, text, cache=call.images)
            self.stats["preprocess_cache_hits"] += call.images.hits - hits
        else:
            prep = self.adapter.prepare(self.processor, images, text)
        timings = {"prepare_ms": _ms(t)}
        n = len(prep.image_positions)
        layout.check_token_counts(n, prep.layout, self.model_type)
        if sum(prep.image_token_counts) != n:
            raise TokenLayoutMismatchError(
                sum(prep.image_token_counts), n, self.model_type, "tokens per image vs placeholders"
            )
        t = time.perf_counter()
        feats = []
        with torch.no_grad():
            for i, key in enumerate(prep.cache_keys):
                f = call.features.get(key) if key is not None else None
                if f is None:
                    f = self.adapter.encode_image(self.model, prep, i)  # (N_i, D)
                    self.stats["vision_encodes"] += 1
                    if key is not None:
                        call.features[key] = f
                else:
                    self.stats["encode_cache_hits"] += 1
                if f.shape[0] != prep.image_token_counts[i]:
                    raise TokenLayoutMismatchError(
                        prep.image_token_counts[i], f.shape[0], self.model_type,
                        f"features of image {i} vs its placeholders",
                    )  # fmt: skip
                feats.append(f)
            timings["encode_ms"] = _ms(t)
            t = time.perf_counter()
            embeds = self.adapter.embed(self.model, prep, feats).detach()  # (1, T, D)
        timings["embed_ms"] = _ms(t)
        return prep, embeds, timings

    def _inputs(
        self, call: _Call, q: Question, crops: tuple[Box, ...]
    ) -> tuple[PreparedInputs, torch.Tensor, dict[str, float]]:
        """[page, crops...] + question, cropped, prepared and embedded (see :meth:`_embed`)."""
        t = time.perf_counter()
        images = [call.page, *(self._crop(call, b) for b in crops)]
        crop_ms = _ms(t)
        prep, embeds, timings = self._embed(call, images, q.text)
        timings["crop_ms"] = crop_ms
        return prep, embeds, timings

    def _map(self, call: _Call, q: Question, crops: tuple[Box, ...], rnd: int) -> _RoundData:
        """One mapping round on [page, crops...]: entropy and raw grids."""
        prep, embeds, timings = self._inputs(call, q, crops)
        t = time.perf_counter()
        eg = entropy_gradient(
            lambda e: self.adapter.next_token_logits(self.model, prep, e),
            embeds,
            prep.image_positions,
            f"question {q.question_id!r}, round {rnd}, {len(crops)} crops",
        )
        self.stats["forwards"] += 1
        self.stats["backwards"] += 1
        timings["relevance_ms"] = _ms(t)
        grids = layout.scores_to_grids(
            eg.scores, prep.layout, (Box.full(), *crops), self.model_type
        )
        return _RoundData(prep, embeds, eg.entropy, grids, timings)

    def _forward(
        self, call: _Call, q: Question, crops: tuple[Box, ...], with_answer: bool
    ) -> _RoundData:
        """A round without a map: [page, crops...] forward for the first-token entropy only,
        and, ``with_answer`` (the round is sure to answer), the answer from the same prefill when
        the adapter can (``generate_with_logits``). The plain answer is this with no crops."""
        prep, embeds, timings = self._inputs(call, q, crops)
        t = time.perf_counter()
        both = getattr(self.adapter, "generate_with_logits", None) if with_answer else None
        answer = None
        with torch.no_grad():
            if both is not None:
                answer, logits = both(
                    self.model, self.processor, prep, embeds, self.config.max_new_tokens
                )
                answer = answer.strip()
                self.stats["generations"] += 1
            else:
                logits = self.adapter.next_token_logits(self.model, prep, embeds)  # (1, V)
        self.stats["forwards"] += 1
        h = check_finite(next_token_entropy(logits)[0], f"question {q.question_id!r}")
        timings["forward_ms"] = _ms(t)  # includes the answer when one call did both
        return _RoundData(prep, embeds, h, (), timings, answer)

    def _next_crops(self, call: _Call, top: Sequence[Region]) -> tuple[tuple[Box, Region], ...]:
        """The crops of the next round, each with the region it was cut for, in rank order."""
        cfg = self.config
        aspect = call.page.width / call.page.height
        out: dict[Box, Region] = {}
        for r in top:
            boxes = region_crops(
                r.box, r.peak, cfg, call.page_pt, aspect, max_windows=MAX_WINDOWS_PER_REGION
            )
            for b in boxes:
                out.setdefault(b, r)  # drop exact duplicates, keep rank order
        cap = max(cfg.top_k, MAX_CROPS_PER_ROUND if cfg.legible_scale is not None else cfg.top_k)
        return tuple(out.items())[:cap]

    def _generate(self, data: _RoundData) -> tuple[str, float]:
        t = time.perf_counter()
        with torch.no_grad():
            text = self.adapter.generate(
                self.model, self.processor, data.prepared, data.embeds, self.config.max_new_tokens
            )
        self.stats["generations"] += 1
        return text.strip(), _ms(t)

    def _ground_one(self, call: _Call, q: Question) -> GroundedAnswer:
        t_all = time.perf_counter()
        if self.config.max_rounds == 0:
            data = self._forward(call, q, (), with_answer=True)
            timings = data.timings_ms
            h = data.entropy
            if data.answer is None:
                answer, timings["generate_ms"] = self._generate(data)
            else:  # one prefill gave the entropy and the answer
                answer, timings["generate_ms"] = data.answer, 0.0
            timings["total_ms"] = _ms(t_all)
            return GroundedAnswer(
                q.question_id, q.text, answer, Status.OK, h, h, (), (), "plain", timings,
                extra={"config_hash": self.config_hash},
            )  # fmt: skip

        def run_round(rnd: int, crops: tuple[Box, ...]) -> RoundOutcome[_RoundData]:
            data = self._map(call, q, crops, rnd)
            t = time.perf_counter()
            top, se = regions.top_regions(data.grids, self.config, rnd)
            data.timings_ms["regions_ms"] = _ms(t)
            return RoundOutcome(crops, tuple(top), se, data, data.entropy)

        cfg = self.config
        sources: dict[Box, Region] = {}  # crop -> the region it was cut for

        def next_crops(top: Sequence[Region]) -> tuple[Box, ...]:
            pairs = self._next_crops(call, top)
            sources.update(pairs)
            return tuple(b for b, _ in pairs)

        # the light (last) round is the answer round for sure when it is the only candidate
        sure = cfg.answer_round == "last" or cfg.min_rounds >= cfg.max_rounds

        def light_round(rnd: int, crops: tuple[Box, ...]) -> RoundOutcome[_RoundData]:
            data = self._forward(call, q, crops, with_answer=sure)
            return RoundOutcome(crops, (), float("nan"), data, data.entropy)

        trail = zoom_loop(
            run_round, next_crops, cfg.max_rounds,
            rule=cfg.stop_rule, tau=cfg.stop_tau, min_rounds=cfg.min_rounds,
            light_round=light_round,
        )  # fmt: skip
        chosen = answer_round(trail, cfg.answer_round, cfg.min_rounds)
        final = trail.rounds[chosen]
        if final.payload.answer is not None:  # answered with its round's prefill already
            answer, gen_ms = final.payload.answer, 0.0
        else:
            answer, gen_ms = self._generate(final.payload)
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
        totals["generate_ms"] = gen_ms
        totals["total_ms"] = _ms(t_all)
        return GroundedAnswer(
            question_id=q.question_id,
            question=q.text,
            answer=answer,
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
            },
        )
