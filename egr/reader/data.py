"""Training and evaluation examples for the reference reader, drawn from :mod:`egr.synth`.

An :class:`Example` is what the reader sees in one chat turn: images (the page view first, then
crops, or one crop alone), a prompt and the target text. Four tasks:

- ``transcribe``: one line of Courier text (a value, a label or a table cell) cut at a zoom of
  the phase's pitch range (pixels per character); prompt ``"Transcribe:"``, target the text.
- ``crop_qa``: a crop like the ones EGG cuts around a field (:func:`egg_like_rect`), rendered at
  the reader's fixed crop scale (:func:`render_crop`); prompt the field's question, target its
  answer.
- ``page_crops_qa``: ``[page view, crops...]`` + question: the answer crop among distractor crops
  (or, sometimes, missing), which is exactly what EGG's answer step feeds the model.
- ``page_qa``: ``[page view]`` + question: values cannot be read here, so the model learns its
  prior (and to be unsure) on the page alone.

Every crop carries its per-slot character labels (:func:`slot_labels`) and, when the answer is in
it, the token of each answer character (:func:`char_cells`), for the training-only losses.

Everything is a pure function of the seeds: document ``i`` of a stream is
``generate(kind, train_doc_seed(seed, i))``, and training seeds live in their own hash namespace,
so they never coincide with corpus seeds (``egr.synth.doc_seed``) used for evaluation.

Rendering views and crops, and their labels, is :mod:`egr.reader.views`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pymupdf
from PIL import Image

from egr.reader.views import (
    PEAK_SD,
    char_cells,
    egg_crop_rect,
    page_view,
    render_crop,
    render_rect,
    slot_labels,
)
from egr.synth import KINDS, SynthDocument, SynthField, TextSpan, generate

from .model import TOKEN_PX

TRANSCRIBE_PROMPT = "Transcribe:"


@dataclass(frozen=True)
class Example:
    """One chat turn: images, prompt, target; ``task`` names the generator."""

    images: tuple[Image.Image, ...]
    prompt: str
    target: str
    task: str
    #: (image index, normalised box in that image) of the answer value: where the first answer
    #: token should look (training-only auxiliary loss), or None.
    focus: tuple[int, tuple[float, float, float, float]] | None = None
    #: per image, the characters its token slots show (:func:`slot_labels`), or None (page views):
    #: the training-only per-slot character loss.
    slots: tuple[str | None, ...] | None = None
    #: (image index, merged token index) of each target character's centre, when all are in one
    #: image: the training-only copy loss; or None.
    cells: tuple[tuple[int, int], ...] | None = None


def train_doc_seed(seed: int, index: int) -> int:
    """Seed of training document ``index`` (a namespace disjoint from corpus seeds)."""
    digest = hashlib.sha256(f"egr-reader-train:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class DocPool:
    """Lazily generated training documents with their opened PDFs (LRU cache)."""

    def __init__(self, seed: int, size: int = 4000, cache: int = 256) -> None:
        self.seed, self.size, self.cache = seed, size, cache
        self._docs: OrderedDict[int, tuple[SynthDocument, Any]] = OrderedDict()

    def get(self, index: int) -> tuple[SynthDocument, Any]:
        if index in self._docs:
            self._docs.move_to_end(index)
            return self._docs[index]
        kind = KINDS[index % len(KINDS)]
        doc = generate(kind, train_doc_seed(self.seed, index))
        entry = (doc, pymupdf.open(stream=doc.pdf, filetype="pdf"))
        self._docs[index] = entry
        if len(self._docs) > self.cache:
            _, (_, old) = self._docs.popitem(last=False)
            old.close()
        return entry


def _mono_spans(doc: SynthDocument) -> list[TextSpan]:
    return [s for s in doc.spans if s.monospace and 1 <= len(s.text) <= 26]


def _cells(image_index: int, cells: tuple[int, ...] | None) -> tuple[tuple[int, int], ...] | None:
    return tuple((image_index, c) for c in cells) if cells else None


def transcribe_example(
    rng: random.Random,
    doc: SynthDocument,
    pdf: Any,
    pitch: tuple[float, float],
    aligned: float = 0.0,
) -> Example:
    """One Courier line at ``pitch`` px per character, 1-2 token rows of context.

    With probability ``aligned`` the line is cut glyph-aligned: exactly one character per merged
    token (28 px pitch) and the crop's left edge on a character boundary.
    """
    fields = [f.span for f in doc.fields]
    span = rng.choice(fields) if rng.random() < 0.35 else rng.choice(_mono_spans(doc))
    is_aligned = rng.random() < aligned
    zoom = (TOKEN_PX if is_aligned else rng.uniform(*pitch)) / (0.6 * span.size_pt)
    x0, y0, x1, y1 = span.box_pt
    tok = TOKEN_PX / zoom  # one token in points
    n_cols = math.ceil((x1 - x0) / tok + rng.uniform(0.1, 1.5))
    n_rows = max(1, math.ceil((y1 - y0) / tok + rng.uniform(0.05, 0.9)))
    cw, ch = n_cols * tok, n_rows * tok
    if is_aligned:
        margin = rng.randint(0, 2)
        n_cols = len(span.text) + margin
        cw = n_cols * tok
        cx0 = x0 - rng.randint(0, margin) * tok
    else:
        cx0 = x0 - rng.uniform(0.0, max(cw - (x1 - x0), 0.0))
    cy0 = y0 - rng.uniform(0.0, max(ch - (y1 - y0), 0.0))
    rect = (cx0, cy0, cx0 + cw, cy0 + ch)
    img = render_rect(pdf, span.page, rect, zoom)
    img = img.resize((n_cols * TOKEN_PX, n_rows * TOKEN_PX))  # exact multiples: no resize later
    return Example(
        (img,), TRANSCRIBE_PROMPT, span.text, "transcribe",
        slots=(slot_labels(doc, span.page, rect, img),),
        cells=_cells(0, char_cells(span, rect, img)),
    )  # fmt: skip


def crop_qa_example(rng: random.Random, doc: SynthDocument, pdf: Any, phase: Phase) -> Example:
    """A field's question on an EGG-like crop around its value."""
    f = rng.choice(doc.fields)
    rect, scale = egg_crop_rect(rng, doc, f.span, phase.peak_sd, phase.whole_value)
    img = render_crop(pdf, f.page, rect, scale)
    return Example(
        (img,), f.question, f.answer, "crop_qa",
        slots=(slot_labels(doc, f.page, rect, img),),
        cells=_cells(0, char_cells(f.span, rect, img)),
    )  # fmt: skip


def page_crops_qa_example(
    rng: random.Random, doc: SynthDocument, pdf: Any, phase: Phase
) -> Example:
    """``[page view, crops...]``: the answer crop among 0-2 distractors (10%: it is missing)."""
    f = rng.choice(doc.fields)
    same_page = [g for g in doc.fields if g.page == f.page and g is not f]
    others: list[SynthField] = rng.sample(same_page, k=min(len(same_page), rng.randint(0, 2)))
    crops: list[tuple[Image.Image, Any, Any, str]] = []
    if rng.random() < 0.9 or not others:
        rect, scale = egg_crop_rect(rng, doc, f.span, phase.peak_sd, phase.whole_value)
        img = render_crop(pdf, f.page, rect, scale)
        crops.append(
            (img, _relative(f.span.box_pt, rect), char_cells(f.span, rect, img),
             slot_labels(doc, f.page, rect, img))
        )  # fmt: skip
    for g in others:
        rect, scale = egg_crop_rect(rng, doc, g.span, phase.peak_sd, phase.whole_value)
        img = render_crop(pdf, g.page, rect, scale)
        crops.append((img, None, None, slot_labels(doc, g.page, rect, img)))
    rng.shuffle(crops)
    focus = next(((i + 1, b) for i, (_, b, _, _) in enumerate(crops) if b is not None), None)
    cells = next((_cells(i + 1, cc) for i, (_, _, cc, _) in enumerate(crops) if cc), None)
    images = (page_view(pdf, f.page), *(c[0] for c in crops))
    slots = (None, *(c[3] for c in crops))
    return Example(images, f.question, f.answer, "page_crops_qa", focus, slots, cells)


def page_qa_example(rng: random.Random, doc: SynthDocument, pdf: Any) -> Example:
    f = rng.choice(doc.fields)
    focus = (0, doc.box(f.span).as_tuple())
    return Example((page_view(pdf, f.page),), f.question, f.answer, "page_qa", focus)


def _relative(
    box: tuple[float, float, float, float], rect: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """``box`` (points) in the normalised coordinates of the crop ``rect`` (points), clamped."""
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    x0, x1 = (box[0] - rect[0]) / w, (box[2] - rect[0]) / w
    y0, y1 = (box[1] - rect[1]) / h, (box[3] - rect[1]) / h
    return (max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0))


# ------------------------------------------------------------------------------- curriculum
@dataclass(frozen=True)
class Phase:
    """Task mixture and difficulty from step ``start`` on."""

    start: int
    weights: dict[str, float]
    pitch: tuple[float, float]  # transcription px per character
    aligned: float = 0.0  # share of glyph-aligned transcriptions (one character per token)
    #: the simulated map peak's error around the value's centre (sd across, down; points)
    peak_sd: tuple[float, float] = PEAK_SD
    #: pull the peak back so every crop of a value holds all of it (``views.egg_crop_rect``)
    whole_value: bool = False


#: The training recipe's version, recorded in ``state.pt`` and in the checkpoint
#: (``reader_recipe.json``). A change to the data, the phases or the architecture is a new version;
#: a run never resumes from a state of another version, except a state of a version this one
#: extends (:data:`EXTENDS`) at a step where the two have not yet differed.
RECIPE = 3

#: Step at which recipe 3 leaves recipe 2: before it, every batch of recipe 3 is recipe 2's, byte
#: for byte (same seeds, phases and random draws), so a recipe-2 state at a step <= this one is a
#: recipe-3 state too. From it on, crops are cut around the map-peak error EGG actually makes.
RECIPE_3_FROM = 7200

#: ``version -> last step it shares with this recipe``.
EXTENDS = {2: RECIPE_3_FROM}

PHASES: tuple[Phase, ...] = (
    # reading first: lines and legible crops, every auxiliary loss on from the start
    Phase(0, {"transcribe": 0.5, "crop_qa": 0.5}, (18.0, 36.0), 0.25),
    # the inputs EGG feeds: [page view, crops] and the page alone (where the reader must be unsure)
    Phase(
        1200,
        {"transcribe": 0.35, "crop_qa": 0.35, "page_crops_qa": 0.2, "page_qa": 0.1},
        (14.0, 40.0),
        0.1,
    ),
    # recipe 3: crops around EGG's own map-peak error. Measured with the step-6600 reader on
    # training-namespace pages (53 peaks near their value): across sd 13 pt, down sd 17 pt; recipe
    # 2 assumed 10 and 6, so its reader read a value centred in the window far better than one
    # near the window's top or bottom, where EGG's windows often put it. Every crop holds the
    # whole value; a little more of the [page, crops] input EGG feeds, a little less transcription.
    Phase(
        RECIPE_3_FROM,
        {"transcribe": 0.3, "crop_qa": 0.35, "page_crops_qa": 0.25, "page_qa": 0.1},
        (14.0, 40.0),
        0.1,
        peak_sd=(13.0, 17.0),
        whole_value=True,
    ),
)

#: Examples per step for each task (pages cost more than crops).
BATCH = {"transcribe": 16, "crop_qa": 12, "page_crops_qa": 4, "page_qa": 6}
EXAMPLES_PER_DOC = 4


def phase_at(step: int) -> Phase:
    return [p for p in PHASES if p.start <= step][-1]


def step_batch(seed: int, step: int, pool: DocPool, batch_scale: float = 1.0) -> list[Example]:
    """The batch of training step ``step``: a pure function of ``(seed, step, batch_scale)``."""
    rng = random.Random(f"egr-reader-step:{seed}:{step}")
    phase = phase_at(step)
    tasks, weights = zip(*phase.weights.items(), strict=True)
    task = rng.choices(tasks, weights)[0]
    out = []
    for i in range(
        max(1, round(BATCH[task] * batch_scale))
    ):  # a few examples per document: generating one costs ~50 ms
        if i % EXAMPLES_PER_DOC == 0:
            doc, pdf = pool.get(rng.randrange(pool.size))
        out.append(make_example(rng, task, doc, pdf, phase))
    return out


def make_example(
    rng: random.Random, task: str, doc: SynthDocument, pdf: Any, phase: Phase
) -> Example:
    if task == "transcribe":
        return transcribe_example(rng, doc, pdf, phase.pitch, phase.aligned)
    if task == "crop_qa":
        return crop_qa_example(rng, doc, pdf, phase)
    if task == "page_crops_qa":
        return page_crops_qa_example(rng, doc, pdf, phase)
    if task == "page_qa":
        return page_qa_example(rng, doc, pdf)
    raise ValueError(f"unknown task {task!r}")
