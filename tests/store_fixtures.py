"""Fixture outputs for the store, SQL and CLI tests, built through the real writer.

Everything is made here from hand-built :class:`GroundedAnswer` objects and small synthetic PDFs
(PyMuPDF), then written with :class:`egr_pipeline.store.Store`. No expected result is hard-coded in
the Parquet: the tests compute what they expect from :class:`Fixture`'s inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf

from egr_core.types import (
    Box,
    GridSpan,
    GroundedAnswer,
    Question,
    Region,
    RelevanceGrid,
    Status,
    ZoomRound,
)
from egr_pipeline import records
from egr_pipeline.answer_rows import answer_rows
from egr_pipeline.store import Store

PAGE_W, PAGE_H = 612.0, 792.0  # US Letter, points

# Text placed on the synthetic page: (text, box in normalised page coordinates).
TEXTS: list[tuple[str, Box]] = [
    ("Invoice total: 1,234.56 EUR", Box(0.10, 0.10, 0.60, 0.16)),
    ("Due date: 2026-03-31", Box(0.55, 0.50, 0.90, 0.56)),
    ("Signed by Ada Lovelace", Box(0.15, 0.80, 0.55, 0.86)),
]


def make_pdf(path: Path, lines: list[tuple[str, Box]] = TEXTS, n_pages: int = 1) -> bytes:
    """A PDF whose page 0 holds ``lines`` inside their boxes; returns its bytes."""
    doc = pymupdf.open()
    for i in range(n_pages):
        page = doc.new_page(width=PAGE_W, height=PAGE_H)
        if i == 0:
            for text, b in lines:
                rect = pymupdf.Rect(b.x0 * PAGE_W, b.y0 * PAGE_H, b.x1 * PAGE_W, b.y1 * PAGE_H)
                page.draw_rect(rect, color=(0.85, 0.85, 0.85), width=0.5)
                page.insert_text((rect.x0 + 4, rect.y1 - 12), text, fontsize=14)
        else:
            page.insert_text((72, 72), f"page {i + 1}", fontsize=14)
    data = doc.tobytes()
    doc.close()
    path.write_bytes(data)
    return data


def peaked_grid(rows: int, cols: int, box: Box, peak: Box, magnitude: float) -> np.ndarray:
    """A (rows, cols) grid, ``magnitude`` inside ``peak`` (coords of the page), small elsewhere.

    ``box`` is where the grid lies on the page.
    """
    ys = box.y0 + (np.arange(rows) + 0.5) / rows * box.height  # (R,)
    xs = box.x0 + (np.arange(cols) + 0.5) / cols * box.width  # (C,)
    inside = ((ys >= peak.y0) & (ys <= peak.y1))[:, None] & ((xs >= peak.x0) & (xs <= peak.x1))[
        None, :
    ]  # (R, C)
    grid = np.full((rows, cols), 0.05 * magnitude, dtype=np.float32)
    grid[inside] = magnitude
    return grid


def grounded(
    qid: str,
    question: str,
    answer: str,
    boxes: list[Box],
    *,
    status: Status = Status.OK,
    entropy_before: float = 2.0,
    entropy_after: float = 0.5,
    magnitude: float = 3e-4,
    stop_reason: str = "se_increase",
    logprob: float | None = None,
) -> GroundedAnswer:
    """A two-round grounded answer whose evidence is ``boxes`` (rank order); with ``logprob``,
    read again at two scales (``extra["read_views"]``) that agree, each scoring the answer
    ``logprob`` (so its log-likelihood per view is ``logprob``)."""
    view = GridSpan(start=0, rows=12, cols=9, box=Box.full(), image_index=0)
    round0_grid = RelevanceGrid(
        span=view,
        scores=peaked_grid(
            12, 9, Box.full(), boxes[0] if boxes else Box(0, 0, 0.1, 0.1), magnitude
        ),
    )
    regions0 = tuple(Region(box=b, score=10.0 - i, block=0, round=0) for i, b in enumerate(boxes))
    rounds = [ZoomRound(0, (), (round0_grid,), regions0, 1.2, entropy_before, {"forward": 5.0})]
    evidence = regions0
    if boxes:
        crop = boxes[0]
        crop_span = GridSpan(start=108, rows=4, cols=6, box=Box.full(), image_index=1)
        crop_grid = RelevanceGrid(
            span=crop_span,
            scores=peaked_grid(4, 6, crop, crop, magnitude * 2),
            source_box=crop,
        )
        view_grid = RelevanceGrid(span=view, scores=round0_grid.scores * 0.5)
        regions1 = tuple(
            Region(box=b, score=20.0 - i, block=1 if i == 0 else 0, round=1)
            for i, b in enumerate(boxes)
        )
        rounds.append(
            ZoomRound(1, (crop,), (view_grid, crop_grid), regions1, 0.7, entropy_after, {})
        )
        evidence = regions1
    return GroundedAnswer(
        question_id=qid,
        question=question,
        answer=answer,
        status=status,
        entropy_before=entropy_before,
        entropy_after=entropy_after,
        rounds=tuple(rounds),
        evidence=evidence,
        stop_reason=stop_reason if boxes else "no_region",
        timings_ms={"total": 123.0 + len(qid)},
        extra={}
        if logprob is None
        else {
            "read_views": [
                {"scale": s, "page": False, "answer": answer, "logprob": 2 * logprob}
                for s in (1.0, 0.9)
            ]
        },
    )


def text_under(box: Box, lines: list[tuple[str, Box]] = TEXTS) -> str:
    """The fixture's 'text layer': texts whose box centre lies inside ``box``."""
    out = []
    for text, b in lines:
        cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
        if box.x0 <= cx <= box.x1 and box.y0 <= cy <= box.y1:
            out.append(text)
    return " ".join(out)


def crop_png(pdf: bytes, box: Box, long_side: int = 160) -> bytes:
    """A lossless re-render of ``box`` of page 0 as PNG (what the documents layer supplies)."""
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        page = doc[0]
        clip = pymupdf.Rect(box.x0 * PAGE_W, box.y0 * PAGE_H, box.x1 * PAGE_W, box.y1 * PAGE_H)
        zoom = long_side / max(clip.width, clip.height)
        pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=clip)
        return pix.tobytes("png")


@dataclass
class Fixture:
    """What was written, so tests can derive their expectations."""

    root: str
    store: Store
    run_a: records.RunContext
    run_b: records.RunContext
    docs: dict[str, str] = field(default_factory=dict)  # name -> doc_id
    uris: dict[str, str] = field(default_factory=dict)  # name -> uri
    answers: dict[tuple[str, str, str], GroundedAnswer] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)
    failed: dict[tuple[str, str, str], str] = field(default_factory=dict)  # -> status
    extra: dict[str, Any] = field(default_factory=dict)


QUESTIONS = [
    Question("q_total", "What is the invoice total?"),
    Question("q_due", "When is the invoice due?"),
    Question("q_sign", "Who signed?"),
]

BOXES = {
    "q_total": [TEXTS[0][1], Box(0.5, 0.45, 0.95, 0.6)],
    "q_due": [TEXTS[1][1]],
    "q_sign": [],
}


def build(root: str, pdf_dir: Path, *, fs: Any = None, store_kwargs: Any = None) -> Fixture:
    """Two runs over two documents (one readable, one "encrypted") and three questions.

    Run A: invoice.pdf answered (q_total ok, q_due ok but unsure, q_sign no evidence);
    locked.pdf fails as encrypted. Run B (later, another config): invoice.pdf again, with a
    changed answer to q_total and q_sign now failed.
    """
    store = Store(root, fs=fs, **(store_kwargs or {}))
    t0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    run_a = records.RunContext("20260101T020000Z-aaaaaa", "tiny/qwen", "cfgA", "0.1.0")
    run_b = records.RunContext("20260102T020000Z-bbbbbb", "tiny/qwen", "cfgB", "0.1.0")
    fx = Fixture(root=root, store=store, run_a=run_a, run_b=run_b, questions=list(QUESTIONS))

    invoice = make_pdf(pdf_dir / "invoice.pdf")
    locked = b"%PDF-1.7 pretend-encrypted " + bytes(range(32))
    (pdf_dir / "locked.pdf").write_bytes(locked)
    for name, data in (("invoice.pdf", invoice), ("locked.pdf", locked)):
        fx.docs[name] = hashlib.sha256(data).hexdigest()
        fx.uris[name] = str(pdf_dir / name)

    # (answer, entropy before, entropy after, log-likelihood per view or None: read once)
    answers_a = {
        "q_total": ("1,234.56 EUR", 2.5, 0.3, -0.1),
        "q_due": ("March 31, 2026", 3.1, 2.4, None),
        "q_sign": ("Ada Lovelace", 1.9, 1.7, -0.4),
    }
    answers_b = {
        "q_total": ("1234.56 EUR", 2.4, 0.2, -2.75),  # sure first token, unlikely whole answer
        "q_due": ("March 31, 2026", 3.0, 2.2, None),
    }

    for ctx, start, table in ((run_a, t0, answers_a), (run_b, t0 + timedelta(days=1), answers_b)):
        store.begin_run(
            ctx,
            source=str(pdf_dir),
            questions=QUESTIONS,
            config={"top_k": 3, "tag": ctx.config_hash},
            started_at=start,
        )
        doc_id = fx.docs["invoice.pdf"]
        rows: list[dict[str, list[dict[str, Any]]]] = [
            {
                "documents": [
                    records.document_row(
                        ctx,
                        records.DocInfo(doc_id, fx.uris["invoice.pdf"], len(invoice), 1, "Inv"),
                    )
                ],
                "pages": [
                    records.page_row(
                        ctx,
                        doc_id,
                        0,
                        records.PageSize(PAGE_W, PAGE_H),
                        dpi=72.0,
                        width_px=612,
                        height_px=792,
                    )
                ],
            }
        ]
        for q in QUESTIONS:
            if q.question_id in table:
                text, eb, ea, lp = table[q.question_id]
                boxes = BOXES[q.question_id]
                g = grounded(
                    q.question_id,
                    q.text,
                    text,
                    boxes,
                    status=Status.OK if boxes else Status.NO_EVIDENCE,
                    entropy_before=eb,
                    entropy_after=ea,
                    logprob=lp,
                )
                fx.answers[(ctx.run_id, doc_id, q.question_id)] = g
                rows.append(
                    answer_rows(
                        ctx,
                        doc_id,
                        0,
                        records.PageSize(PAGE_W, PAGE_H),
                        g,
                        text_fn=text_under,
                        crop_fn=lambda b: crop_png(invoice, b),
                    )
                )
            else:
                fx.failed[(ctx.run_id, doc_id, q.question_id)] = "failed"
                rows.append(
                    records.failure_rows(ctx, doc_id, q, "failed", "model ran out of memory")
                )
        store.write_group(ctx, records.merge(*rows))
        if ctx is run_a:
            locked_id = fx.docs["locked.pdf"]
            reason = f"{fx.uris['locked.pdf']}: the PDF is encrypted and no password was given"
            lrows = [
                {
                    "documents": [
                        records.document_row(
                            ctx,
                            records.DocInfo(
                                locked_id,
                                fx.uris["locked.pdf"],
                                len(locked),
                                None,
                                None,
                                status="encrypted",
                                error=reason,
                            ),
                        )
                    ]
                },
                *(records.failure_rows(ctx, locked_id, q, "encrypted", reason) for q in QUESTIONS),
            ]
            for q in QUESTIONS:
                fx.failed[(ctx.run_id, locked_id, q.question_id)] = "encrypted"
            store.write_group(ctx, records.merge(*lrows))
        store.finish_run(ctx)
    fx.extra["invoice_pdf"] = invoice
    return fx
