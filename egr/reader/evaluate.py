"""Evaluation helpers for the reader: held-out items, answer strategies, scoring.

Held-out documents come from :func:`egr_core.synth.generate_corpus` (corpus seeds,
``doc_seed(seed, i)``), a hash namespace disjoint from the training stream
(:func:`egr.reader.data.train_doc_seed`); :func:`check_disjoint` verifies it on the actual sets.

Strategies (each returns a :class:`Outcome`):

- ``plain``: the answer over the page view alone (EGG with ``max_rounds=0``);
- ``egg``: the EGG loop (``EntropyGradientGrounding.ground``) with the model's knobs, or with
  some replaced: ``stop_rule="fixed"`` (``max_rounds`` rounds accepted unconditionally) or
  ``stop_rule="confidence"`` (zoom while the first-answer-token entropy is above ``stop_tau``);
- ``oracle``: the answer over ``[page view, crop of the true answer box]`` (upper bound).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from egr_core.documents import open_pdf
from egr_core.explain import EntropyGradientGrounding, frozen
from egr_core.imaging import crop_box
from egr_core.synth import SynthDocument, generate_corpus
from egr_core.types import Box, Question

#: Page rendering of the pipeline (the processor then downsizes to the reader's budget).
RENDER_MAX_PIXELS = 2_000_000
RENDER_MAX_SIDE = 2000


@dataclass(frozen=True)
class Item:
    """One held-out question: its document, page view, crop function and true answer box."""

    doc: SynthDocument
    question_id: str
    question: str
    answer: str
    page: int
    box: Box  # normalised page box of the answer value
    small_print: bool


@dataclass(frozen=True)
class Outcome:
    """What one strategy produced for one item."""

    answer: str
    correct: bool
    top_box: Box | None  # top-1 evidence box (page coordinates), None when there is none
    rounds: int  # mapping rounds run (forward + backward passes), 0 for plain / oracle
    seconds: float


def held_out_items(n_docs: int, seed: int) -> list[Item]:
    """Every question of ``n_docs`` corpus documents made with ``seed`` (kinds take turns)."""
    items = []
    for _, doc in generate_corpus(n_docs, seed):
        for f in doc.fields:
            items.append(
                Item(
                    doc, f.question_id, f.question, f.answer, f.page, doc.box(f.span), f.small_print
                )
            )
    return items


def check_disjoint(items: list[Item], train_seed: int, pool_size: int = 4000) -> None:
    """Raise if a held-out document seed is also a training document seed."""
    from egr.reader.data import train_doc_seed

    train = {train_doc_seed(train_seed, i) for i in range(pool_size)}
    clash = sorted({it.doc.seed for it in items} & train)
    if clash:
        raise AssertionError(f"{len(clash)} held-out seeds are training seeds: {clash[:5]}")


class PageCache:
    """Page views and crop functions of held-out documents (PDFs opened once)."""

    def __init__(self) -> None:
        self._docs: dict[str, Any] = {}
        self._pages: dict[tuple[str, int], Image.Image] = {}

    def pdf(self, doc: SynthDocument) -> Any:
        if doc.doc_id not in self._docs:
            self._docs[doc.doc_id] = open_pdf(doc.pdf, name=f"{doc.kind}-{doc.seed}.pdf")
        return self._docs[doc.doc_id]

    def page(self, item: Item) -> Image.Image:
        key = (item.doc.doc_id, item.page)
        if key not in self._pages:
            r = self.pdf(item.doc).render_page(
                item.page, max_pixels=RENDER_MAX_PIXELS, max_side=RENDER_MAX_SIDE
            )
            self._pages[key] = r.image
        return self._pages[key]

    def crop_fn(self, item: Item) -> Any:
        pdf = self.pdf(item.doc)
        return lambda box, px: pdf.render_clip(item.page, box, long_side_px=px)


def box_holds(outer: Box, inner: Box, min_fraction: float = 0.9) -> bool:
    """True if at least ``min_fraction`` of ``inner``'s area lies inside ``outer``."""
    w = max(0.0, min(outer.x1, inner.x1) - max(outer.x0, inner.x0))
    h = max(0.0, min(outer.y1, inner.y1) - max(outer.y0, inner.y0))
    area = (inner.x1 - inner.x0) * (inner.y1 - inner.y0)
    return area > 0 and w * h >= min_fraction * area


def char_accuracy(answer: str, truth: str) -> float:
    """1 - (Levenshtein distance / length of ``truth``), floored at 0: near misses score high."""
    a, t = normalise(answer), normalise(truth)
    prev = list(range(len(t) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, ct in enumerate(t, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != ct)))
        prev = cur
    return max(0.0, 1.0 - prev[-1] / max(len(t), 1))


def normalise(text: str) -> str:
    return text.strip()


def _outcome(item: Item, answer: str, top: Box | None, rounds: int, t0: float) -> Outcome:
    ok = normalise(answer) == normalise(item.answer)
    return Outcome(answer, ok, top, rounds, time.perf_counter() - t0)


def run_plain(egg: EntropyGradientGrounding, pages: PageCache, item: Item) -> Outcome:
    """The answer over the page view alone: the EGG call with ``max_rounds=0``."""
    return run_egg(egg, pages, item, max_rounds=0)


def run_egg(egg: EntropyGradientGrounding, pages: PageCache, item: Item, **knobs: Any) -> Outcome:
    """The EGG loop with ``egg``'s config, or with ``knobs`` replaced (e.g. another stop rule)."""
    t0 = time.perf_counter()
    if knobs:
        egg = EntropyGradientGrounding(
            egg.model, egg.processor, egg.adapter, egg.config.replace(**knobs)
        )
    q = Question(item.question_id, item.question)
    (ga,) = egg.ground(pages.page(item), [q], crop_fn=pages.crop_fn(item))
    top = ga.evidence[0].box if ga.evidence else None
    return _outcome(item, ga.answer, top, len(ga.rounds), t0)


def oracle_box(item: Item, egg: EntropyGradientGrounding, page: Image.Image) -> Box:
    """The answer box padded like an EGG crop (same pad, min side and aspect rules)."""
    cfg = egg.config
    return crop_box(
        item.box, pad=cfg.crop_pad, min_side=cfg.min_crop, page_aspect=page.width / page.height
    )


def answer_over(
    egg: EntropyGradientGrounding, page: Image.Image, crops: list[Image.Image], question: str
) -> str:
    """Greedy answer over ``[page, crops...]`` (or the crops alone when ``page`` is None)."""
    import torch

    images = ([page] if page is not None else []) + crops
    with frozen(egg.model), torch.no_grad():
        prep = egg.adapter.prepare(egg.processor, images, question)
        feats = [egg.adapter.encode_image(egg.model, prep, i) for i in range(len(images))]
        embeds = egg.adapter.embed(egg.model, prep, feats)
        text = egg.adapter.generate(
            egg.model, egg.processor, prep, embeds, egg.config.max_new_tokens
        )
    return str(text).strip()


def run_oracle(
    egg: EntropyGradientGrounding, pages: PageCache, item: Item, *, with_page: bool = True
) -> Outcome:
    t0 = time.perf_counter()
    page = pages.page(item)
    box = oracle_box(item, egg, page)
    crop = pages.crop_fn(item)(box, egg.config.crop_pixels).convert("RGB")
    answer = answer_over(egg, page if with_page else None, [crop], item.question)
    return _outcome(item, answer, box, 0, t0)
