"""Ground-and-answer task: one per chunk of rendered documents; each document's model work runs
inside a model slot and is committed in batches (egr_pipeline.work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from egr_pipeline import stopping
from egr_pipeline.rasterize import RasterizedDoc
from egr_pipeline.records import RunContext
from egr_pipeline.summary import DocOutcome, crashed
from egr_pipeline.work import WorkSpec
from egr_pipeline.work import answer_document as _answer
from tasks import progress
from tasks.persist import store_for

#: Outcomes after which the rest of a chunk is not answered: the run is stopping.
STOPPING = ("slot_timeout", "cancelled")


@task(name="ground-and-answer", cache_policy=NO_CACHE)
def answer_documents(
    docs: Sequence[RasterizedDoc],
    spec: WorkSpec,
    ctx: RunContext,
    out: str,
    storage_options: dict[str, Any],
) -> list[DocOutcome]:
    """Rank pages, ground the top ones and answer every pending question of each document,
    committing each batch; one outcome per document, in order.

    Per-item exceptions become failure rows; an exception that escapes a document (a bug)
    is logged with its traceback and becomes that document's ``crashed`` outcome only. After a
    document finds no model slot or sees the run stop, the rest of the chunk is ``cancelled``
    without waiting again (the flow then stops the run).
    """
    log, store = get_run_logger(), store_for(out, storage_options)
    outcomes: list[DocOutcome] = []
    for doc in docs:
        if outcomes and outcomes[-1].doc_status in STOPPING:
            why = "not answered, the run is stopping"
            outcomes.append(DocOutcome(doc.uri, "cancelled", 0, {}, why, written=False))
            continue
        try:
            outcomes.append(_answer(
                doc, spec, ctx, store, stopping.STOP,
                advance=lambda n: progress.advance("questions", n), say=log.warning,
            ))  # fmt: skip
        except Exception as exc:
            log.exception("%s: answering crashed", doc.uri)
            outcomes.append(crashed(doc.uri, len(doc.questions), exc))
    return outcomes
