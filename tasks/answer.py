"""Ground-and-answer task: model work inside a model slot, committed in batches
(egr_pipeline.work)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from egr_pipeline import stopping
from egr_pipeline.rasterize import RasterizedDoc
from egr_pipeline.records import RunContext
from egr_pipeline.summary import DocOutcome
from egr_pipeline.work import WorkSpec
from egr_pipeline.work import answer_document as _answer
from tasks import progress
from tasks.persist import store_for


@task(name="ground-and-answer", cache_policy=NO_CACHE)
def answer_document(
    doc: RasterizedDoc, spec: WorkSpec, ctx: RunContext, out: str, storage_options: dict[str, Any]
) -> DocOutcome:
    """Rank pages, ground the top ones and answer every pending question of one document,
    committing each batch; per-item exceptions become failure rows."""
    return _answer(
        doc, spec, ctx, store_for(out, storage_options), stopping.STOP,
        advance=lambda n: progress.advance("questions", n), say=get_run_logger().warning,
    )  # fmt: skip
