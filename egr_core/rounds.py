"""The model steps of EGG's rounds, run for many questions of one page at once.

A round of one question is a prompt ``[page, crops...] + question``: prepared (HF processor, per
image once per page call), encoded (vision tower, once per distinct image per page call) and
embedded, then either *mapped* (forward + entropy backward, :meth:`RoundRunner.maps`) or only
*forwarded* (:meth:`RoundRunner.forwards`, optionally answering from the same prefill). Prompts
of different questions are batched: one decoder forward and one backward for a batch (the rows'
entropies are summed; each row's gradient is its own, see
:func:`egr_core.relevance.entropy_gradients`), and one batched greedy decode. Batches hold at
most ``batch_tokens`` prompt tokens; a batch that runs out of memory is split in halves and
retried, down to single prompts.

Adapters opt in with ``batch_next_token_logits`` and ``batch_generate_with_logits``; for the
others, rows run one at a time through the single-prompt methods (same results, no speed-up).
Timings of a batch are shared equally by its rows, so per-question timings add up to wall time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from PIL import Image

from egr_core import layout
from egr_core.adapters import PreparedInputs, VLMAdapter
from egr_core.adapters.base import Decoded, ImageCache
from egr_core.config import EgrConfig
from egr_core.errors import TokenLayoutMismatchError
from egr_core.imaging import CropFn, crop_long_side
from egr_core.relevance import entropy_gradients
from egr_core.targets import check_finite, next_token_entropy
from egr_core.types import Box, Question, RelevanceGrid

#: Preprocessed images kept per page call (page + crops of every question and round).
PREPROCESS_CACHE_SIZE = 64
#: Prompt tokens per batch unless the caller says otherwise (a few page prompts of a small model;
#: raise it on a GPU with memory to spare).
DEFAULT_BATCH_TOKENS = 8192

T = TypeVar("T")


@dataclass
class PageCall:
    """Per-page state shared by every question: preprocessing, encode and crop caches."""

    page: Image.Image
    crop_fn: CropFn
    #: the page's size in points (legible-scale crops); the page image's pixels when unknown
    page_pt: tuple[float, float]
    images: ImageCache = field(default_factory=lambda: ImageCache(PREPROCESS_CACHE_SIZE))
    features: dict[Any, torch.Tensor] = field(default_factory=dict)
    crops: dict[tuple[float, ...], Image.Image] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ask:
    """One prompt: a question with the crops of one of its rounds."""

    question: Question
    crops: tuple[Box, ...]
    round: int


@dataclass(frozen=True)
class RoundData:
    """What a round's prompt produced (the payload of a :class:`~egr_core.zoom.RoundOutcome`)."""

    prepared: PreparedInputs
    embeds: torch.Tensor  # (1, T, D) detached
    entropy: float
    grids: tuple[RelevanceGrid, ...]
    timings_ms: dict[str, float]
    answer: str | None = None  # generated with the round's prefill, when it was sure to answer


def ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - t0) * 1000.0


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA/MPS/CPU allocation failure (worth retrying with a smaller batch)."""
    oom = getattr(torch, "OutOfMemoryError", ())
    if isinstance(exc, MemoryError) or (oom and isinstance(exc, oom)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class RoundRunner:
    """The model steps for one model, adapter and config (owned by the method object).

    Args:
        stats: the method object's counters (vision_encodes, encode_cache_hits, forwards,
            backwards, generations, crops, batches, batch_splits); forwards, backwards and
            generations count prompts, ``batches`` counts decoder calls.
        batch_tokens: most prompt tokens in one batch (>= one prompt is always allowed).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        adapter: VLMAdapter,
        config: EgrConfig,
        *,
        model_type: str,
        min_image_side: int,
        prepare_takes_cache: bool,
        stats: Counter[str],
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        self.model, self.processor, self.adapter, self.config = model, processor, adapter, config
        self.model_type, self.min_image_side = model_type, min_image_side
        self.prepare_takes_cache, self.stats = prepare_takes_cache, stats
        self.batch_tokens = max(1, int(batch_tokens))

    # ------------------------------------------------------------------ inputs
    def crop(self, call: PageCall, box: Box, config: EgrConfig | None = None) -> Image.Image:
        """The crop of ``box`` at the scale of ``config`` (default: the runner's), cached per page
        call: shared by questions."""
        config = config or self.config
        size = call.page_pt if config.legible_scale is not None else call.page.size
        long_side = crop_long_side(box, size, config)
        key = (*box.as_tuple(), long_side)
        if key not in call.crops:
            img = call.crop_fn(box, long_side).convert("RGB")
            if min(img.size) < self.min_image_side:  # a thin crop: upscale, geometry unchanged
                s = self.min_image_side / min(img.size)
                img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
            call.crops[key] = img
            self.stats["crops"] += 1
        return call.crops[key]

    def embed(
        self, call: PageCall, images: list[Image.Image], text: str
    ) -> tuple[PreparedInputs, torch.Tensor, dict[str, float]]:
        """Prepare, encode (cached, no_grad), check counts and scatter: (1, T, D) embeddings."""
        t = time.perf_counter()
        if self.prepare_takes_cache:
            hits = call.images.hits
            prep = self.adapter.prepare(self.processor, images, text, cache=call.images)
            self.stats["preprocess_cache_hits"] += call.images.hits - hits
        else:
            prep = self.adapter.prepare(self.processor, images, text)
        timings = {"prepare_ms": ms(t)}
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
            timings["encode_ms"] = ms(t)
            t = time.perf_counter()
            embeds = self.adapter.embed(self.model, prep, feats).detach()  # (1, T, D)
        timings["embed_ms"] = ms(t)
        return prep, embeds, timings

    def inputs(
        self, call: PageCall, ask: Ask, config: EgrConfig | None = None, *, with_page: bool = True
    ) -> tuple[PreparedInputs, torch.Tensor, dict[str, float]]:
        """[page, crops...] + question (``with_page=False``: the crops alone), cropped at
        ``config``'s scale (default the runner's), prepared and embedded (see :meth:`embed`)."""
        t = time.perf_counter()
        crops = [self.crop(call, b, config) for b in ask.crops]
        images = [call.page, *crops] if with_page or not crops else crops
        crop_ms = ms(t)
        prep, embeds, timings = self.embed(call, images, ask.question.text)
        timings["crop_ms"] = crop_ms
        return prep, embeds, timings

    # ------------------------------------------------------------------ batched steps
    def maps(self, call: PageCall, asks: Sequence[Ask]) -> list[RoundData]:
        """Mapping rounds: first-token entropy and raw relevance grids of every prompt."""
        ins = [self.inputs(call, a) for a in asks]

        def run(idx: list[int]) -> list[RoundData]:
            t = time.perf_counter()
            preps = [ins[i][0] for i in idx]
            whats = [
                f"question {asks[i].question.question_id!r}, round {asks[i].round}, "
                f"{len(asks[i].crops)} crops"
                for i in idx
            ]
            egs = entropy_gradients(
                lambda leaves: self._logits(preps, leaves),
                [ins[i][1] for i in idx],
                [p.image_positions for p in preps],
                whats,
            )
            self.stats["forwards"] += len(idx)
            self.stats["backwards"] += len(idx)
            share = ms(t) / len(idx)
            out = []
            for i, eg in zip(idx, egs, strict=True):
                prep, embeds, timings = ins[i]
                grids = layout.scores_to_grids(
                    eg.scores, prep.layout, (Box.full(), *asks[i].crops), self.model_type
                )
                out.append(
                    RoundData(prep, embeds, eg.entropy, grids, {**timings, "relevance_ms": share})
                )
            return out

        return self._batched(run, [int(e.shape[1]) for _, e, _ in ins])

    def forwards(self, call: PageCall, asks: Sequence[Ask], with_answer: bool) -> list[RoundData]:
        """Rounds without a map: each prompt's first-token entropy and, ``with_answer``, its
        answer from the same prefill (when the adapter can: ``generate_with_logits``)."""
        ins = [self.inputs(call, a) for a in asks]

        def run(idx: list[int]) -> list[RoundData]:
            t = time.perf_counter()
            preps, embeds = [ins[i][0] for i in idx], [ins[i][1] for i in idx]
            answers: list[str | None] = [None] * len(idx)
            with torch.no_grad():
                both = self._answers(preps, embeds) if with_answer else None
                if both is not None:
                    answers = [a for a, _ in both]
                    logits = torch.cat([lg for _, lg in both], dim=0)  # (B, V)
                    self.stats["generations"] += len(idx)
                else:
                    logits = self._logits(preps, embeds)  # (B, V)
            self.stats["forwards"] += len(idx)
            h = next_token_entropy(logits)  # (B,)
            share = ms(t) / len(idx)  # includes the answers when one call did both
            return [
                RoundData(
                    ins[i][0],
                    ins[i][1],
                    check_finite(h[k], f"question {asks[i].question.question_id!r}"),
                    (),
                    {**ins[i][2], "forward_ms": share},
                    answers[k],
                )
                for k, i in enumerate(idx)
            ]

        return self._batched(run, [int(e.shape[1]) for _, e, _ in ins])

    def generate(self, datas: Sequence[RoundData]) -> list[tuple[str, float]]:
        """Greedy answers from rounds' inputs: ``(text, ms)`` each."""

        def run(idx: list[int]) -> list[tuple[str, float]]:
            t = time.perf_counter()
            preps = [datas[i].prepared for i in idx]
            embeds = [datas[i].embeds for i in idx]
            with torch.no_grad():
                both = self._answers(preps, embeds)
                if both is not None:
                    texts = [a for a, _ in both]
                else:
                    texts = [
                        self.adapter.generate(
                            self.model, self.processor, p, e, self.config.max_new_tokens
                        ).strip()
                        for p, e in zip(preps, embeds, strict=True)
                    ]
            self.stats["generations"] += len(idx)
            share = ms(t) / len(idx)
            return [(text, share) for text in texts]

        return self._batched(run, [int(d.embeds.shape[1]) for d in datas])

    def generate_scored(self, datas: Sequence[RoundData]) -> list[Decoded] | None:
        """Greedy answers from rounds' inputs with their token ids and summed log-probability
        (batched like :meth:`generate`); None when the adapter cannot score its own decoding
        (``batch_generate_scored``)."""
        batch = getattr(self.adapter, "batch_generate_scored", None)
        if batch is None:
            return None

        def run(idx: list[int]) -> list[Decoded]:
            preps = [datas[i].prepared for i in idx]
            embeds = [datas[i].embeds for i in idx]
            with torch.no_grad():
                out = batch(self.model, self.processor, preps, embeds, self.config.max_new_tokens)
            self.stats["generations"] += len(idx)
            self.stats["batches"] += 1
            return list(out)

        return self._batched(run, [int(d.embeds.shape[1]) for d in datas])

    # ------------------------------------------------------------------ batching
    def _logits(self, preps: list[PreparedInputs], embeds: list[torch.Tensor]) -> torch.Tensor:
        """Next-token logits (B, V): one decoder call when the adapter batches, else per row."""
        batch = getattr(self.adapter, "batch_next_token_logits", None)
        self.stats["batches"] += 1 if batch is not None and len(preps) > 1 else len(preps)
        if batch is not None and len(preps) > 1:
            return batch(self.model, preps, embeds)
        rows = [
            self.adapter.next_token_logits(self.model, p, e)
            for p, e in zip(preps, embeds, strict=True)
        ]
        return torch.cat(rows, dim=0)

    def _answers(
        self, preps: list[PreparedInputs], embeds: list[torch.Tensor]
    ) -> list[tuple[str, torch.Tensor]] | None:
        """Answers and first-token logits (1, V) from one prefill per prompt; None when the
        adapter cannot answer from its prefill."""
        n = self.config.max_new_tokens
        batch = getattr(self.adapter, "batch_generate_with_logits", None)
        if batch is not None and len(preps) > 1:
            self.stats["batches"] += 1
            return [
                (a.strip(), lg) for a, lg in batch(self.model, self.processor, preps, embeds, n)
            ]
        single = getattr(self.adapter, "generate_with_logits", None)
        if single is None:
            return None
        self.stats["batches"] += len(preps)
        return [
            (a.strip(), lg)
            for a, lg in (
                single(self.model, self.processor, p, e, n)
                for p, e in zip(preps, embeds, strict=True)
            )
        ]

    def _batched(self, run: Callable[[list[int]], list[T]], lengths: Sequence[int]) -> list[T]:
        """``run`` over consecutive groups of at most ``batch_tokens`` prompt tokens, in order;
        a group that runs out of memory is split in halves (a single prompt re-raises)."""
        out: list[T] = []
        group: list[int] = []
        used = 0
        for i, n in enumerate(lengths):
            if group and used + n > self.batch_tokens:
                out.extend(self._split_on_oom(run, group))
                group, used = [], 0
            group.append(i)
            used += n
        if group:
            out.extend(self._split_on_oom(run, group))
        return out

    def _split_on_oom(self, run: Callable[[list[int]], list[T]], idx: list[int]) -> list[T]:
        try:
            return run(idx)
        except (RuntimeError, MemoryError) as exc:
            if len(idx) == 1 or not is_out_of_memory(exc):
                raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.stats["batch_splits"] += 1
        half = len(idx) // 2
        return self._split_on_oom(run, idx[:half]) + self._split_on_oom(run, idx[half:])
