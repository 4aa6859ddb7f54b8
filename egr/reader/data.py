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

from egr.synth import KINDS, SynthDocument, SynthField, TextSpan, generate
from egr_core.imaging import legible_crops
from egr_core.types import Box

from .model import MAX_TOKENS_PER_IMAGE, TOKEN_PX

TRANSCRIBE_PROMPT = "Transcribe:"
#: Pixels rendered per page-view token before the processor downsizes (as the pipeline does).
PAGE_OVERSAMPLE = 1.5


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


# ------------------------------------------------------------------------------- rendering
def render_rect(
    pdf: Any, page: int, rect: tuple[float, float, float, float], zoom: float
) -> Image.Image:
    """Render a page rectangle (points, origin top-left) at ``zoom`` px/pt as RGB."""
    pix = pdf[page].get_pixmap(
        matrix=pymupdf.Matrix(zoom, zoom), clip=pymupdf.Rect(*rect), alpha=False
    )
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def page_view(pdf: Any, page: int) -> Image.Image:
    """The page rendered a little above the reader's pixel budget (the processor downsizes)."""
    r = pdf[page].rect
    budget = MAX_TOKENS_PER_IMAGE * TOKEN_PX * TOKEN_PX * PAGE_OVERSAMPLE**2
    zoom = math.sqrt(budget / (r.width * r.height))
    return render_rect(pdf, page, (0, 0, r.width, r.height), zoom)


def fit_tokens(img: Image.Image) -> Image.Image:
    """``img`` resized to whole merged tokens within the reader's budget, as the processor would.

    Doing it here keeps every training image's token grid known (slot labels, copy targets).
    """
    cols, rows = max(1, round(img.width / TOKEN_PX)), max(1, round(img.height / TOKEN_PX))
    if cols * rows > MAX_TOKENS_PER_IMAGE:
        s = math.sqrt(MAX_TOKENS_PER_IMAGE / (cols * rows))
        cols, rows = max(1, math.floor(cols * s)), max(1, math.floor(rows * s))
    return img.resize((cols * TOKEN_PX, rows * TOKEN_PX))


#: Crop geometry of recipe 2 (fixed with the recipe, whatever EGG knobs the checkpoint ships):
#: the legible scale (px/pt), the longest crop side (px) and the region's padding across.
LEGIBLE_SCALE, CROP_PX, CROP_PAD = 5.0, 616, 0.1
#: Training crops render at the legible scale times a factor in this range (scale jitter).
SCALE_JITTER = (0.85, 1.2)
#: Window heights (points) of training crops, around the reader's ``crop_window_pt``.
WINDOW_JITTER = (56.0, 84.0)


def egg_crop_rect(
    rng: random.Random, doc: SynthDocument, span: TextSpan
) -> tuple[tuple[float, float, float, float], float]:
    """A crop rectangle (points) and its scale (px/pt), cut the way EGG cuts the reader's crops.

    EGG's page-view region around a value is a blob of a few ~40 pt cells, often reaching over
    the label or a neighbouring line; its peak lies near the value. Here the region is the value's
    box grown by 0-40 pt across and 0-30 pt down, the peak the value's centre moved by a few
    points, and the crop comes from EGG's own rule (:func:`egr_core.imaging.legible_crops`, the
    window holding most of the value), at the reader's legible scale times a jitter factor. So
    values sit off-centre, with neighbouring text in the crop.
    """
    w, h = doc.page_sizes_pt[span.page]
    x0, y0, x1, y1 = span.box_pt
    gx = (rng.uniform(0, 40), rng.uniform(0, 40))
    gy = (rng.uniform(0, 30), rng.uniform(0, 30))
    region = Box(
        max((x0 - gx[0]) / w, 0.0), max((y0 - gy[0]) / h, 0.0),
        min((x1 + gx[1]) / w, 1.0), min((y1 + gy[1]) / h, 1.0),
    )  # fmt: skip
    peak = (((x0 + x1) / 2 + rng.gauss(0, 10)) / w, ((y0 + y1) / 2 + rng.gauss(0, 6)) / h)
    scale = LEGIBLE_SCALE * rng.uniform(*SCALE_JITTER)
    crops = legible_crops(
        region, peak, (w, h), scale=scale, max_long_px=CROP_PX,
        window_pt=rng.uniform(*WINDOW_JITTER), pad=CROP_PAD, max_crops=3,
    )  # fmt: skip

    def overlap(b: Box) -> float:
        return max(0.0, min(b.x1 * w, x1) - max(b.x0 * w, x0))

    best = max(crops, key=overlap)
    return (best.x0 * w, best.y0 * h, best.x1 * w, best.y1 * h), scale


def render_crop(
    pdf: Any, page: int, rect: tuple[float, float, float, float], scale: float
) -> Image.Image:
    """``rect`` rendered at ``scale`` px/pt, as EGG renders the reader's crops, in whole tokens
    (at most the reader's token budget: an over-budget window is scaled down a little)."""
    return fit_tokens(render_rect(pdf, page, rect, scale))


#: Label of a slot that shows no character centre but part of one (not supervised).
IGNORE = "\x00"


def slot_labels(
    doc: SynthDocument, page: int, rect: tuple[float, float, float, float], image: Image.Image
) -> str:
    """What each half-token column shows: ``2 * rows * cols`` characters, row-major.

    A merged token is 2x2 patches; its left and right patch columns are its two *slots*. A slot's
    label is the Courier character whose centre lies in it (on the token row holding the text
    line's centre), a space where no text is drawn, and :data:`IGNORE` elsewhere (other rows of a
    line, glyph parts without a centre, non-monospace text).
    """
    cols, rows = image.width // TOKEN_PX, image.height // TOKEN_PX
    half = TOKEN_PX // 2
    sx, sy = image.width / (rect[2] - rect[0]), image.height / (rect[3] - rect[1])
    grid = [[" "] * (2 * cols) for _ in range(rows)]
    inside = [
        s for s in doc.spans
        if s.page == page and s.box_pt[2] > rect[0] and s.box_pt[0] < rect[2]
        and s.box_pt[3] > rect[1] and s.box_pt[1] < rect[3]
    ]  # fmt: skip
    for s in inside:  # everything under any text: not supervised unless labelled below
        r0, r1 = (s.box_pt[1] - rect[1]) * sy / TOKEN_PX, (s.box_pt[3] - rect[1]) * sy / TOKEN_PX
        c0, c1 = (s.box_pt[0] - rect[0]) * sx / half, (s.box_pt[2] - rect[0]) * sx / half
        for r in range(max(0, math.floor(r0)), min(rows, math.ceil(r1))):
            for c in range(max(0, math.floor(c0)), min(2 * cols, math.ceil(c1))):
                grid[r][c] = IGNORE
    for s in inside:
        if not s.monospace:
            continue
        row = math.floor(((s.box_pt[1] + s.box_pt[3]) / 2 - rect[1]) * sy / TOKEN_PX)
        if not 0 <= row < rows:
            continue
        pitch = 0.6 * s.size_pt
        for k, ch in enumerate(s.text):
            c = math.floor((s.box_pt[0] + (k + 0.5) * pitch - rect[0]) * sx / half)
            if 0 <= c < 2 * cols:
                grid[row][c] = ch
    return "".join("".join(r) for r in grid)


def char_cells(
    span: TextSpan, rect: tuple[float, float, float, float], image: Image.Image
) -> tuple[int, ...] | None:
    """Merged-token index of each character centre of ``span`` in ``image`` (a render of ``rect``).

    None unless every character centre falls inside the image. Two characters may share a token
    when the pitch is under a token.
    """
    cols, rows = image.width // TOKEN_PX, image.height // TOKEN_PX
    sx, sy = image.width / (rect[2] - rect[0]), image.height / (rect[3] - rect[1])
    pitch = 0.6 * span.size_pt
    yc = (span.box_pt[1] + span.box_pt[3]) / 2
    row = math.floor((yc - rect[1]) * sy / TOKEN_PX)
    out = []
    for k in range(len(span.text)):
        col = math.floor((span.box_pt[0] + (k + 0.5) * pitch - rect[0]) * sx / TOKEN_PX)
        if not (0 <= col < cols and 0 <= row < rows):
            return None
        out.append(row * cols + col)
    return tuple(out)


# ------------------------------------------------------------------------------- tasks
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


def crop_qa_example(rng: random.Random, doc: SynthDocument, pdf: Any) -> Example:
    """A field's question on an EGG-like crop around its value."""
    f = rng.choice(doc.fields)
    rect, scale = egg_crop_rect(rng, doc, f.span)
    img = render_crop(pdf, f.page, rect, scale)
    return Example(
        (img,), f.question, f.answer, "crop_qa",
        slots=(slot_labels(doc, f.page, rect, img),),
        cells=_cells(0, char_cells(f.span, rect, img)),
    )  # fmt: skip


def page_crops_qa_example(rng: random.Random, doc: SynthDocument, pdf: Any) -> Example:
    """``[page view, crops...]``: the answer crop among 0-2 distractors (10%: it is missing)."""
    f = rng.choice(doc.fields)
    same_page = [g for g in doc.fields if g.page == f.page and g is not f]
    others: list[SynthField] = rng.sample(same_page, k=min(len(same_page), rng.randint(0, 2)))
    crops: list[tuple[Image.Image, Any, Any, str]] = []
    if rng.random() < 0.9 or not others:
        rect, scale = egg_crop_rect(rng, doc, f.span)
        img = render_crop(pdf, f.page, rect, scale)
        crops.append(
            (img, _relative(f.span.box_pt, rect), char_cells(f.span, rect, img),
             slot_labels(doc, f.page, rect, img))
        )  # fmt: skip
    for g in others:
        rect, scale = egg_crop_rect(rng, doc, g.span)
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


#: The training recipe's version, recorded in ``state.pt`` and in the checkpoint
#: (``reader_recipe.json``). A change to the data, the phases or the architecture is a new version;
#: a run never resumes from a state of another version.
RECIPE = 2

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
        return crop_qa_example(rng, doc, pdf)
    if task == "page_crops_qa":
        return page_crops_qa_example(rng, doc, pdf)
    if task == "page_qa":
        return page_qa_example(rng, doc, pdf)
    raise ValueError(f"unknown task {task!r}")
