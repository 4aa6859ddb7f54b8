"""Store tasks: the run's begin/end rows and one atomic write group per document."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from egr_pipeline.plan import filesystem
from egr_pipeline.records import RunContext
from egr_pipeline.store import Store


def store_for(out: str, storage_options: dict[str, Any]) -> Store:
    """The output root's store (its filesystem from the run's storage options)."""
    return Store(out, fs=filesystem(out, storage_options) if "://" in out else None)


@task(name="begin-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def begin_run(out: str, ctx: RunContext, source: str, questions: Any, config: dict[str, Any],
              storage_options: dict[str, Any]) -> None:  # fmt: skip
    """Write the run's "begin" row (status running)."""
    store_for(out, storage_options).begin_run(
        ctx, source=source, questions=questions, config=config
    )


@task(name="finish-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def finish_run(out: str, ctx: RunContext, status: str, counts: dict[str, int],
               error: str | None, storage_options: dict[str, Any]) -> None:  # fmt: skip
    """Write the run's "end" row: its final status and counts."""
    store_for(out, storage_options).finish_run(ctx, status=status, counts=counts, error=error)
