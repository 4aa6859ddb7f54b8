"""Plan task: resolve config and questions, list the source, skip work already done."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from egr_core.config import EgrConfig
from egr_pipeline.plan import RunPlan, plan_run


@task(name="plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def plan_corpus(
    source: str,
    questions: str,
    model: str,
    out: str,
    egr: EgrConfig | None,
    overrides: dict[str, Any],
    storage_options: dict[str, Any],
) -> RunPlan:
    """List the PDFs of ``source``, hash them and keep the (document, question) items not done."""
    return plan_run(source, questions, model, out, egr, overrides, storage_options)
