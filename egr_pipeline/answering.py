"""The answer step's plain-Python parts: rank pages, ground them, and turn results into rows.

Multi-page documents (``shared/design/method.md`` section 4): each question's candidate pages are
ranked by the first-answer-token entropy of [page] + question (one forward, no backward; lower =
the model is surer), and only the ``top_pages`` best are grounded. Questions that chose the same
page are grounded together, so the page's vision encoding is shared. When a question is grounded
on several pages, the answer with the lowest final entropy wins.

Nothing here catches exceptions: the answer task decides what a failure becomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from egr_core.errors import InputError
from egr_core.types import GroundedAnswer, Question
from egr_pipeline import records
from egr_pipeline.answer_rows import answer_rows
from egr_pipeline.rasterize import DocView, RasterizedDoc

Rows = dict[str, list[records.Row]]


def make_grounder(loaded: Any, config: Any) -> Any:
    """An ``EntropyGradientGrounding`` over a loaded model (cheap: no weights are touched)."""
    from egr_core.explain import EntropyGradientGrounding

    return EntropyGradientGrounding(loaded.model, loaded.processor, loaded.adapter, config)


def candidate_pages(view: DocView, question: Question) -> list[int]:
    """The processed pages a question may use: its own ``pages``, else all of them.

    Raises:
        InputError: none of the question's pages was processed.
    """
    have = view.page_indices
    pages = [p for p in question.pages if p in have] if question.pages else have
    if not pages:
        raise InputError(
            f"{view.doc.uri}: question {question.question_id!r} asks for pages "
            f"{list(question.pages or ())}, but only pages 0..{len(have) - 1} were processed "
            f"(document has {view.doc.n_pages} pages)"
        )
    return pages


def rank_pages(grounder: Any, view: DocView, question: Question, top_pages: int) -> list[int]:
    """The ``top_pages`` candidate pages with the lowest first-token entropy, best first."""
    ranked, failures = rank_all(grounder, view, [question], top_pages)
    if question.question_id in failures:
        raise failures[question.question_id]
    return ranked[question.question_id]


def rank_all(
    grounder: Any, view: DocView, questions: Sequence[Question], top_pages: int
) -> tuple[dict[str, list[int]], dict[str, BaseException]]:
    """:func:`rank_pages` for many questions: each page's questions get their first-token
    entropies as one batch (``first_token_entropies``), so a page is encoded once for all.

    Returns:
        ``question_id -> pages`` best first, and ``question_id -> exception`` for questions that
        could not be ranked (no processed page, or a page that failed for them).
    """
    ranked: dict[str, list[int]] = {}
    failures: dict[str, BaseException] = {}
    candidates: dict[str, list[int]] = {}
    for q in questions:
        try:
            pages = candidate_pages(view, q)
        except Exception as exc:  # noqa: BLE001 - per-item failure becomes a row
            failures[q.question_id] = exc
            continue
        if len(pages) <= top_pages:
            ranked[q.question_id] = pages
        else:
            candidates[q.question_id] = pages
    scores: dict[str, list[tuple[float, int]]] = {qid: [] for qid in candidates}
    for page in sorted({p for pages in candidates.values() for p in pages}):
        on_page = [q for q in questions if page in candidates.get(q.question_id, ())]
        try:
            entropies = grounder.first_token_entropies(view.image(page), on_page)
        except Exception as exc:  # noqa: BLE001 - per-item failure becomes a row
            failures.update({q.question_id: exc for q in on_page})
            continue
        for q, h in zip(on_page, entropies, strict=True):
            scores[q.question_id].append((h, page))
    for qid, scored in scores.items():
        if qid not in failures:
            ranked[qid] = [p for _, p in sorted(scored)[:top_pages]]
    return ranked, failures


def by_page(ranked: Mapping[str, Sequence[int]], questions: Sequence[Question]) -> dict[int, list]:
    """``page -> questions`` that chose it, pages in ascending order."""
    out: dict[int, list[Question]] = {}
    for q in questions:
        for p in ranked.get(q.question_id, ()):
            out.setdefault(p, []).append(q)
    return dict(sorted(out.items()))


def ground_page(
    grounder: Any, view: DocView, page: int, questions: Sequence[Question]
) -> list[tuple[int, GroundedAnswer]]:
    """Ground every question on one page; crops are re-rendered losslessly from the PDF."""
    answers = grounder.ground(
        view.image(page),
        list(questions),
        crop_fn=view.crop_fn(page),
        page_size_pt=view.size_pt(page),
    )
    return [(page, a) for a in answers]


def surest_after_zooming(item: tuple[int, GroundedAnswer]) -> float:
    """Sort key of a question's (page, answer) pairs: the first-token entropy after grounding,
    lowest first (a non-finite one last); the pipeline keeps the first."""
    e = item[1].entropy_after
    return e if e is not None and math.isfinite(e) else math.inf


def error_status(exc: BaseException) -> str:
    """The status column value of an item that ended in ``exc``."""
    return str(getattr(exc, "status", None) or "failed")


def document_rows(
    ctx: records.RunContext,
    view: DocView,
    results: Sequence[tuple[int, GroundedAnswer]],
    failures: Mapping[str, BaseException],
) -> Rows:
    """All rows of one rasterized document: document, pages, and per question its best answer
    (or a failure row when no page gave one)."""
    return records.merge(head_rows(ctx, view.doc), item_rows(ctx, view, view.doc.questions,
                                                             results, failures))  # fmt: skip


def head_rows(ctx: records.RunContext, doc: RasterizedDoc) -> Rows:
    """The documents row and the pages rows of a document (written with its first batch)."""
    return {
        "documents": [records.document_row(ctx, doc_info(doc))],
        "pages": [_page_row(ctx, doc, p) for p in doc.pages],
    }


def item_rows(
    ctx: records.RunContext,
    view: DocView,
    questions: Sequence[Question],
    results: Sequence[tuple[int, GroundedAnswer]],
    failures: Mapping[str, BaseException],
) -> Rows:
    """Per question of ``questions`` its best answer's rows, or a failure row when no page gave
    one."""
    doc = view.doc
    parts: list[Rows] = []
    for q in questions:
        mine = [r for r in results if r[1].question_id == q.question_id]
        if mine:
            page, best = min(mine, key=surest_after_zooming)
            parts.append(
                answer_rows(
                    ctx,
                    doc.doc_id,
                    page,
                    view.geometry(page),
                    best,
                    text_fn=view.text_fn(page),
                    crop_fn=view.evidence_crop_fn(page),
                    text_source=view.text_source(page),
                )
            )
            continue
        exc = failures.get(q.question_id) or RuntimeError("no page produced an answer")
        parts.append(
            records.failure_rows(
                ctx, doc.doc_id, q, error_status(exc), f"{doc.uri}: {type(exc).__name__}: {exc}"
            )
        )
    return records.merge(*parts)


def plan_batches(
    ranked: Mapping[str, Sequence[int]], questions: Sequence[Question], batch_size: int
) -> list[list[Question]]:
    """Commit batches: the ranked questions ordered by their best page, cut at every page
    change and every ``batch_size`` questions (so a batch is one page, or part of one)."""
    order = sorted(
        (q for q in questions if ranked.get(q.question_id)),
        key=lambda q: ranked[q.question_id][0],
    )
    batches: list[list[Question]] = []
    for q in order:
        page = ranked[q.question_id][0]
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and ranked[last[0].question_id][0] == page:
            last.append(q)
        else:
            batches.append([q])
    return batches


def failed_document_rows(ctx: records.RunContext, doc: RasterizedDoc) -> Rows:
    """Rows of a document that could not be used: its status row, and one failure row per
    question carrying the document's status and reason."""
    parts: list[Rows] = [{"documents": [records.document_row(ctx, doc_info(doc))]}]
    for q in doc.questions:
        parts.append(records.failure_rows(ctx, doc.doc_id, q, doc.status, doc.error or doc.status))
    return records.merge(*parts)


def doc_info(doc: RasterizedDoc) -> records.DocInfo:
    """The documents-table record. A cut document keeps its status ("ok" when fine) and says so
    in ``truncated`` and ``n_pages_processed`` (of ``n_pages``)."""
    return records.DocInfo(
        doc.doc_id, doc.uri, doc.n_bytes, doc.n_pages, doc.title, doc.status, doc.error,
        n_pages_processed=len(doc.pages), truncated=doc.truncated,
    )  # fmt: skip


def _page_row(ctx: records.RunContext, doc: RasterizedDoc, p: Any) -> records.Row:
    return records.page_row(
        ctx,
        doc.doc_id,
        p.index,
        p,
        rotation=p.rotation,
        dpi=p.dpi,
        width_px=p.width_px,
        height_px=p.height_px,
    )
