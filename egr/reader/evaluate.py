"""Evaluation helpers for the reader and for EGG: held-out items, strategies, scoring, intervals.

Held-out documents come from :func:`egr.synth.generate_corpus` (corpus seeds,
``doc_seed(seed, i)``), a hash namespace disjoint from the training stream
(:func:`egr.reader.data.train_doc_seed`); :func:`check_disjoint` verifies it on the actual sets.

Every strategy sees what the pipeline sees: the page the pipeline would choose (pages ranked by
first-answer-token entropy, :func:`choose_page`, on multi-page documents), the page view rendered
as the pipeline renders it, and crops re-rendered losslessly from the PDF. Strategies (each returns
an :class:`Outcome`):

- ``plain``: the answer over the page view alone (EGG with ``max_rounds=0``);
- ``egg``: ``EntropyGradientGrounding.ground`` with the model's knobs, or with some replaced;
- ``prior``: no model for the pointing: the legible window at the field's usual position on the
  page (:class:`LayoutPrior`, learnt from training-namespace documents), read by the model;
- ``oracle``: the legible windows of the true answer box (the same crop rule as EGG's), read by
  the model with the page view (or alone: crop reading).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from egr.synth import KINDS, SynthDocument, generate, generate_corpus
from egr_core.documents import open_pdf
from egr_core.explain import EntropyGradientGrounding
from egr_core.imaging import region_crops
from egr_core.types import Box, GroundedAnswer, Question, Region
from egr_pipeline.answering import surest_after_zooming

#: Page rendering of the pipeline (the processor then downsizes to the reader's budget).
RENDER_MAX_PIXELS = 2_000_000
RENDER_MAX_SIDE = 2000
#: "Holds the whole answer": at least this share of the answer box's area is inside the crop.
WHOLE = 0.98


@dataclass(frozen=True)
class Item:
    """One held-out question: its document, true page and answer box."""

    doc: SynthDocument
    question_id: str
    question: str
    answer: str
    page: int
    box: Box  # normalised page box of the answer value
    small_print: bool

    @property
    def page_pt(self) -> tuple[float, float]:
        return self.doc.page_sizes_pt[self.page]


@dataclass(frozen=True)
class Outcome:
    """What one strategy produced for one item (None: not measured by this strategy)."""

    answer: str
    correct: bool
    chars: float  # character accuracy
    rounds: int  # mapping rounds (forward + backward passes); 0 for plain / prior / oracle
    seconds: float
    pointing: bool | None = None  # the page-view map's peak cell touches the answer box
    crop_holds: bool | None = None  # the crop the answer was read through holds the answer
    page_hit: bool | None = None  # multi-page documents: the answer came from the answer's page
    grid: tuple[int, int] | None = None  # (rows, columns) of the page view's map


def held_out_items(n_docs: int, seed: int, kinds: Sequence[str] = KINDS) -> list[Item]:
    """Every question of ``n_docs`` corpus documents made with ``seed`` (kinds take turns)."""
    items = []
    for _, doc in generate_corpus(n_docs, seed, kinds):
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

    def view(self, doc: SynthDocument, page: int) -> Image.Image:
        key = (doc.doc_id, page)
        if key not in self._pages:
            r = self.pdf(doc).render_page(
                page, max_pixels=RENDER_MAX_PIXELS, max_side=RENDER_MAX_SIDE
            )
            self._pages[key] = r.image
        return self._pages[key]

    def crop_fn(self, doc: SynthDocument, page: int) -> Any:
        pdf = self.pdf(doc)
        return lambda box, px: pdf.render_clip(page, box, long_side_px=px)


# ------------------------------------------------------------------------------- scoring
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


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mean_interval(xs: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """95% normal interval of a mean."""
    if len(xs) < 2:
        return (math.nan, math.nan)
    m, s = statistics.mean(xs), statistics.stdev(xs)
    h = z * s / math.sqrt(len(xs))
    return (m - h, m + h)


def bootstrap(
    stat: Callable[[np.ndarray], float], n: int, reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``stat(indices)`` over ``n`` items."""
    rng = np.random.default_rng(seed)
    vals = [stat(rng.integers(0, n, n)) for _ in range(reps)]
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return (math.nan, math.nan)
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))


# ------------------------------------------------------------------------------- page choice
@dataclass(frozen=True)
class PageChoice:
    page: int  # ranked first
    hit: bool | None  # the answer's page was ranked first; None on single-page documents
    seconds: float
    #: the pages grounded (``top_pages`` best ranked, best first); () = just ``page``
    candidates: tuple[int, ...] = ()


def choose_page(
    egg: EntropyGradientGrounding, pages: PageCache, item: Item, top_pages: int = 1
) -> PageChoice:
    """The pages the pipeline grounds: the ``top_pages`` of lowest first-answer-token entropy on
    the page view (``egr_pipeline.answering.rank_pages``); the only page of a one-page document."""
    n = item.doc.n_pages
    if n == 1:
        return PageChoice(0, None, 0.0)
    t0 = time.perf_counter()
    q = Question(item.question_id, item.question)
    scores = sorted((egg.first_token_entropy(pages.view(item.doc, p), q), p) for p in range(n))
    ranked = tuple(p for _, p in scores[:top_pages])
    return PageChoice(ranked[0], ranked[0] == item.page, time.perf_counter() - t0, ranked)


# ------------------------------------------------------------------------------- strategies
def _outcome(item: Item, answer: str, rounds: int, t0: float, **kw: Any) -> Outcome:
    return Outcome(
        answer,
        normalise(answer) == normalise(item.answer),
        char_accuracy(answer, item.answer),
        rounds,
        time.perf_counter() - t0,
        **kw,
    )


def page_view_grid(ga: GroundedAnswer) -> tuple[int, int] | None:
    """(rows, columns) of the page view's map in round 0 (None when there is none)."""
    for g in ga.rounds[0].grids if ga.rounds else ():
        if g.span.image_index == 0:
            return (int(g.scores.shape[0]), int(g.scores.shape[1]))
    return None


def peak_cell_hits(ga: GroundedAnswer, box: Box) -> bool:
    """Whether the page-view map's strongest cell (round 0, the page's grids) touches ``box``."""
    if not ga.rounds:
        return False
    best, cell = -math.inf, None
    for g in ga.rounds[0].grids:
        if g.span.image_index != 0:
            continue
        rows, cols = g.scores.shape
        r, c = np.unravel_index(int(np.argmax(g.scores)), g.scores.shape)
        if g.scores[r, c] > best:
            best = float(g.scores[r, c])
            sb, ib = g.source_box, g.span.box
            cell = sb.sub(ib.sub(Box(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)))
    return cell is not None and cell.intersection(box) > 0


def run_plain(
    egg: EntropyGradientGrounding, pages: PageCache, item: Item, choice: PageChoice
) -> Outcome:
    """The answer over the chosen page's view alone: the EGG call with ``max_rounds=0``."""
    return run_egg(egg, pages, item, choice, max_rounds=0)


def run_egg(
    egg: EntropyGradientGrounding,
    pages: PageCache,
    item: Item,
    choice: PageChoice,
    **knobs: Any,
) -> Outcome:
    """The EGG loop with ``egg``'s config, or with ``knobs`` replaced, on the chosen page."""
    if knobs:
        egg = EntropyGradientGrounding(
            egg.model, egg.processor, egg.adapter, egg.config.replace(**knobs)
        )
    t0 = time.perf_counter() - choice.seconds
    q = Question(item.question_id, item.question)
    answers = []
    for p in choice.candidates or (choice.page,):
        (ga,) = egg.ground(
            pages.view(item.doc, p),
            [q],
            crop_fn=pages.crop_fn(item.doc, p),
            page_size_pt=item.doc.page_sizes_pt[p],
        )
        answers.append((p, ga))
    p, ga = min(answers, key=surest_after_zooming)  # several pages: the pipeline's rule
    on_page = p == item.page
    grounded = egg.config.max_rounds > 0
    top = ga.evidence[0] if ga.evidence else None
    holds = (
        on_page
        and top is not None
        and top.crop is not None
        and box_holds(top.crop, item.box, WHOLE)
    )
    return _outcome(
        item,
        ga.answer,
        sum(1 for r in ga.rounds if r.grids),
        t0,
        pointing=(on_page and peak_cell_hits(ga, item.box)) if grounded else None,
        crop_holds=holds if grounded else None,
        page_hit=on_page if choice.hit is not None else None,
        grid=page_view_grid(ga),
    )


def windows(
    egg: EntropyGradientGrounding, region: Box, peak: tuple[float, float], item: Item
) -> tuple[Box, ...]:
    """EGG's crops for ``region`` on the item's page (its crop rule and knobs)."""
    w, h = item.page_pt
    return region_crops(
        region, peak, egg.config, item.page_pt, w / h, max_windows=egg.config.max_windows
    )


def read_region(
    egg: EntropyGradientGrounding,
    pages: PageCache,
    item: Item,
    region: Box,
    peak: tuple[float, float],
    *,
    alone: bool = False,
) -> str:
    """EGG's answer step (``egg.read``: its crop rule and its views) on ``region`` of the item's
    page; ``alone``: the crops alone, one greedy read, whatever the knobs say."""
    if alone:
        knobs = {"answer_page": False, "read_scales": ()}
        egg = EntropyGradientGrounding(
            egg.model, egg.processor, egg.adapter, egg.config.replace(**knobs)
        )
    return egg.read(
        pages.view(item.doc, item.page), Question(item.question_id, item.question),
        [Region(box=region, score=1.0, block=0, round=0, peak=peak)],
        crop_fn=pages.crop_fn(item.doc, item.page), page_size_pt=item.page_pt,
    )  # fmt: skip


def run_oracle(
    egg: EntropyGradientGrounding, pages: PageCache, item: Item, *, with_page: bool = True
) -> Outcome:
    """The true answer box cut with EGG's crop rule (region = the box, peak = its centre) and
    read by EGG's answer step (its views included); ``with_page=False``: the crops alone, one
    greedy read."""
    t0 = time.perf_counter()
    b = item.box
    peak = ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)
    boxes = windows(egg, b, peak, item)
    answer = read_region(egg, pages, item, b, peak, alone=not with_page)
    return _outcome(item, answer, 0, t0, crop_holds=any(box_holds(c, b, WHOLE) for c in boxes))


class LayoutPrior:
    """ "Where this field usually is": the mean answer-box centre per question, normalised, over
    ``n_docs`` documents of the *training* namespace (never the evaluated ones)."""

    def __init__(self, n_docs: int = 120, seed: int = 0) -> None:
        from egr.reader.data import train_doc_seed

        sums: dict[str, list[float]] = {}
        for i in range(n_docs):
            doc = generate(KINDS[i % len(KINDS)], train_doc_seed(seed + 7_000_001, i))
            for f in doc.fields:
                b = doc.box(f.span)
                acc = sums.setdefault(f.question_id, [0.0, 0.0, 0.0])
                acc[0] += (b.x0 + b.x1) / 2
                acc[1] += (b.y0 + b.y1) / 2
                acc[2] += 1
        self.point = {q: (v[0] / v[2], v[1] / v[2]) for q, v in sums.items()}


def run_prior(
    egg: EntropyGradientGrounding,
    pages: PageCache,
    item: Item,
    prior: LayoutPrior,
    grid: tuple[int, int],
) -> Outcome:
    """No model for the pointing: the page-view grid cell (``grid`` = rows, columns of the page
    map) at the field's usual position, and the model reading EGG's crop of that cell."""
    t0 = time.perf_counter()
    x, y = prior.point[item.question_id]
    rows, cols = grid
    c, r = min(int(x * cols), cols - 1), min(int(y * rows), rows - 1)
    cell = Box(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)
    boxes = windows(egg, cell, (x, y), item)
    answer = read_region(egg, pages, item, cell, (x, y))
    return _outcome(
        item,
        answer,
        0,
        t0,
        pointing=cell.intersection(item.box) > 0,
        crop_holds=box_holds(boxes[0], item.box, WHOLE),
    )
