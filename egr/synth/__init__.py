"""Seeded generator of detail-critical synthetic PDFs with a known answer box per question.

Four kinds of business document are drawn with PyMuPDF vector text: ``invoice``, ``form``
(an insurance claim form), ``table`` (a quarterly expense table) and ``report`` (3-5 pages, every
answer on page 1 or later). Each kind has a fixed question set (:data:`QUESTIONS`), asked the way
a nightly corpus run asks it; each document holds its own answers. One question per kind is
*small print* (6-7.5 pt) whose value cannot be read on a downscaled full page but can on a zoomed,
re-rendered crop.

Design choices that serve training a tiny reader later (see ``transformers-notes.md``):

- Every answer value is drawn in Courier (``cour`` / ``cobo``), alone in its own text run, from a
  small alphabet (digits, capital letters, ``. - / $ ,``) and without spaces, so one value is one
  word of the text layer and one character is one glyph cell of pitch ``0.6 * size_pt``
  (:meth:`TextSpan.char_boxes_pt`).
- Labels of key-value lines are Courier at the value size (one token row per line); form fields
  use the usual small Helvetica caption above the value; headings, body text and tables use
  varied fonts and sizes (Helvetica, Times, bold and italic variants).
- Every drawn text run is recorded as a :class:`TextSpan`, so a trainer can cut crops with exact
  per-character supervision, not only the answer fields.
- Each answer string occurs exactly once as a word in its document, and the answers of one
  document are pairwise different (a document that violates this is redrawn from a derived seed).

Everything is a pure function of ``(kind, seed)``: fixed PDF metadata dates, no random ``/ID``, so
the same inputs give byte-identical PDFs. No disk I/O here; ``egr synth`` writes the files.

Questions apply per kind: :func:`question_set` gives every question the file-name pattern of its
kind (``documents: [invoice-*.pdf]``), so a corpus run asks a claim form only claim-form
questions, and the ground truth (:meth:`SynthDocument.ground_truth`) has a row for every pair a
run answers.

Layouts are jittered per document (:class:`egr.synth.canvas.Jitter`): the layout is
shrunk (82-100%), moved, pulled apart between blocks at random heights, and the invoice's meta
fields are drawn in a random order, so that no fixed page position answers a question.
``generate(..., jitter=False)`` draws the fixed base layouts.

Use from a trainer::

    doc = generate("invoice", seed)           # ~30-70 ms; doc.pdf is the PDF's bytes
    f = doc.field("invoice_total")            # f.answer, f.page, f.span.box_pt, f.span.size_pt
    cells = f.span.char_boxes_pt()            # one (x0, y0, x1, y1) per character, in points

The drawing code lives in :mod:`egr.synth.layouts` (a canvas, content makers, one module per kind).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from egr.synth.canvas import MONOSPACE_FONTS, Canvas, Jitter, Rect4, TextSpan
from egr.synth.layouts import LAYOUTS
from egr_core.types import Box, Question

__all__ = [
    "KINDS",
    "MONOSPACE_FONTS",
    "QUESTIONS",
    "SMALL_PRINT_MAX_PT",
    "VALUE_ALPHABET",
    "Rect4",
    "SynthDocument",
    "SynthField",
    "TextSpan",
    "doc_seed",
    "generate",
    "generate_corpus",
    "question_set",
]

KINDS: tuple[str, ...] = ("invoice", "form", "table", "report")

#: The fixed question set of every kind: (question_id, text). Ids are unique across kinds.
QUESTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "invoice": (
        ("invoice_number", "What is the invoice number?"),
        ("invoice_date", "What is the invoice date?"),
        ("invoice_due_date", "What is the due date?"),
        ("invoice_total", "What is the invoice total?"),
        ("invoice_payment_reference", "What is the payment reference?"),
    ),
    "form": (
        ("form_claim_number", "What is the claim number?"),
        ("form_policy_number", "What is the policy number?"),
        ("form_date_of_loss", "What is the date of loss?"),
        ("form_claimed_amount", "What is the claimed amount?"),
        ("form_agent_code", "What is the agent code?"),
    ),
    "table": (
        ("table_q1_total", "What is the total of the Q1 column?"),
        ("table_q3_total", "What is the total of the Q3 column?"),
        ("table_grand_total", "What is the grand total?"),
        ("table_ledger_reference", "What is the ledger reference?"),
    ),
    "report": (
        ("report_reference_code", "What is the reference code?"),
        ("report_approved_budget", "What is the approved budget?"),
        ("report_approval_date", "What is the approval date?"),
        ("report_filing_code", "What is the filing code?"),
    ),
}

SMALL_PRINT_MAX_PT = 8.0
#: Characters answer values are drawn from.
VALUE_ALPHABET = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-/$,")

_MAX_REDRAWS = 20


@dataclass(frozen=True, slots=True)
class SynthField:
    """A question of the document's kind with its answer: the text of ``span``."""

    question_id: str
    question: str
    span: TextSpan

    @property
    def answer(self) -> str:
        return self.span.text

    @property
    def page(self) -> int:
        return self.span.page

    @property
    def small_print(self) -> bool:
        return self.span.size_pt <= SMALL_PRINT_MAX_PT


@dataclass(frozen=True, slots=True)
class SynthDocument:
    """A generated PDF plus everything known about what was drawn on it."""

    kind: str
    seed: int
    pdf: bytes = field(repr=False)
    doc_id: str  # sha256 hex of ``pdf``
    page_sizes_pt: tuple[tuple[float, float], ...]  # (width, height) per page, displayed frame
    fields: tuple[SynthField, ...]
    spans: tuple[TextSpan, ...] = field(repr=False)

    @property
    def n_pages(self) -> int:
        return len(self.page_sizes_pt)

    def box(self, span: TextSpan) -> Box:
        """The normalised page box of ``span`` (origin top-left)."""
        w, h = self.page_sizes_pt[span.page]
        x0, y0, x1, y1 = span.box_pt
        return Box(max(x0 / w, 0.0), max(y0 / h, 0.0), min(x1 / w, 1.0), min(y1 / h, 1.0))

    def field(self, question_id: str) -> SynthField:
        for f in self.fields:
            if f.question_id == question_id:
                return f
        raise KeyError(f"{self.kind} document has no question {question_id!r}")

    def ground_truth(self, doc_name: str) -> list[dict[str, Any]]:
        """One JSON-ready row per question of this document (the ground-truth JSONL rows)."""
        rows = []
        for f in self.fields:
            b = self.box(f.span)
            rows.append(
                {
                    "doc": doc_name,
                    "doc_id": self.doc_id,
                    "kind": self.kind,
                    "seed": self.seed,
                    "question_id": f.question_id,
                    "question": f.question,
                    "answer": f.answer,
                    "page": f.page,
                    "box_pt": [round(v, 3) for v in f.span.box_pt],
                    "box": [round(v, 6) for v in b.as_tuple()],
                    "font": f.span.font,
                    "size_pt": f.span.size_pt,
                    "small_print": f.small_print,
                }
            )
        return rows


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def question_set(kinds: Sequence[str] = KINDS) -> tuple[Question, ...]:
    """All questions of ``kinds``, in :data:`KINDS` order (the questions file of a synth corpus).

    Each question names the documents it applies to (``documents: [<kind>-*.pdf]``, the file
    names :func:`generate_corpus` gives), so a run asks it only of documents of its kind.
    """
    _check_kinds(kinds)
    return tuple(
        Question(question_id=qid, text=text, documents=(f"{kind}-*.pdf",))
        for kind in KINDS
        if kind in kinds
        for qid, text in QUESTIONS[kind]
    )


def doc_seed(seed: int, index: int) -> int:
    """Seed of document ``index`` of a corpus made with ``seed`` (independent of corpus size)."""
    digest = hashlib.sha256(f"egr-synth:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: fits a signed int64 column


def generate(kind: str, seed: int, *, jitter: bool = True) -> SynthDocument:
    """Draw one document of ``kind``, a pure function of ``(kind, seed, jitter)``.

    Args:
        kind: one of :data:`KINDS`.
        seed: any integer.
        jitter: distort the layout per document (:class:`egr.synth.canvas.Jitter`: scale,
            offset, gaps between blocks, label font, field order), so that no fixed page position
            answers a question. ``False`` draws the kind's base layout (fields move by about 1%
            of the page between documents), kept to show how much a fixed layout flatters.

    Returns:
        The PDF bytes, its sha256, page sizes, the answer fields and every drawn text run.

    Raises:
        ValueError: on an unknown kind.
    """
    _check_kinds([kind])
    for attempt in range(_MAX_REDRAWS):
        rng = random.Random(seed if attempt == 0 else doc_seed(seed, -attempt))
        jrng = random.Random(f"egr-synth-jitter:{seed}:{attempt}")
        canvas = Canvas(partial(Jitter.draw, jrng), jrng) if jitter else Canvas()
        found = LAYOUTS[kind](canvas, rng)
        fields = tuple(
            SynthField(question_id=qid, question=text, span=found[qid])
            for qid, text in QUESTIONS[kind]
        )
        if _answers_unambiguous(fields, canvas.spans):
            pdf = canvas.finish(title=f"{kind} {seed}")
            return SynthDocument(
                kind=kind,
                seed=seed,
                pdf=pdf,
                doc_id=hashlib.sha256(pdf).hexdigest(),
                page_sizes_pt=tuple(canvas.sizes),
                fields=fields,
                spans=tuple(canvas.spans),
            )
        canvas.doc.close()
    raise AssertionError(f"no unambiguous {kind} layout for seed {seed} in {_MAX_REDRAWS} draws")


def generate_corpus(
    n_docs: int, seed: int, kinds: Sequence[str] = KINDS
) -> Iterator[tuple[str, SynthDocument]]:
    """Yield ``(file_name, document)`` for documents ``0 .. n_docs-1``; kinds take turns.

    Document ``i`` depends only on ``(seed, i, kinds)``, so a smaller corpus is a prefix of a
    larger one made with the same seed and kinds.
    """
    _check_kinds(kinds)
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    for i in range(n_docs):
        kind = kinds[i % len(kinds)]
        yield f"{kind}-{i:05d}.pdf", generate(kind, doc_seed(seed, i))


def _check_kinds(kinds: Sequence[str]) -> None:
    bad = [k for k in kinds if k not in QUESTIONS]
    if bad or not kinds:
        raise ValueError(f"unknown document kind(s) {bad}; known kinds: {', '.join(KINDS)}")


def _answers_unambiguous(fields: Sequence[SynthField], spans: Sequence[TextSpan]) -> bool:
    """Each answer is one word that occurs exactly once in the document; answers differ."""
    words = Counter(w for s in spans for w in s.text.split())
    answers = [f.answer for f in fields]
    return len(set(answers)) == len(answers) and all(
        words[a] == 1 and " " not in a and set(a) <= VALUE_ALPHABET for a in answers
    )
