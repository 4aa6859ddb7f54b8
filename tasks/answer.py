"""Ground-and-answer task: model work under the global GPU limit; failures become rows."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from egr_core.config import EgrConfig
from tasks.io import answering as A
from tasks.io.models import load_model
from tasks.io.rasterize import RasterizedDoc, open_view
from tasks.io.records import RunContext
from tasks.limits import gpu_slot


@task(name="ground-and-answer", cache_policy=NO_CACHE)
def answer_document(
    doc: RasterizedDoc, model: str, device: str, dtype: str, config: EgrConfig, top_pages: int,
    ctx: RunContext, gpu_limit: str,
) -> A.Rows:  # fmt: skip
    """Rank pages, ground the top ones and answer every pending question of one document.

    Per-item exceptions are caught here, once, and become failure rows (``error_status``).
    """
    if not doc.usable:  # the sandbox could not render it: status rows, no in-process open
        return A.failed_document_rows(ctx, doc)
    results, failures = [], {}
    with gpu_slot(gpu_limit), open_view(doc) as view:
        try:
            egg = A.make_grounder(load_model(model, device, dtype), config)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load fails every item
            return A.document_rows(ctx, view, [], {q.question_id: exc for q in doc.questions})
        ranked = {}
        for q in doc.questions:
            try:
                ranked[q.question_id] = A.rank_pages(egg, view, q, top_pages)
            except Exception as exc:  # noqa: BLE001 - per-item failure becomes a row
                failures[q.question_id] = exc
        for page, qs in A.by_page(ranked, doc.questions).items():
            try:
                results += A.ground_page(egg, view, page, qs)
            except Exception as exc:  # noqa: BLE001 - per-item failure becomes a row
                failures.update({q.question_id: exc for q in qs})
        return A.document_rows(ctx, view, results, failures)
