"""Rasterize task: one per document, rendered in a sandboxed worker; retried only on transient
I/O errors (a document that times out or exhausts the sandbox's memory is a status, not a retry)."""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from egr_pipeline import faults, stopping
from egr_pipeline.plan import DocItem
from egr_pipeline.rasterize import (
    RasterizedDoc,
    RenderSpec,
    failed,
    is_transient,
    rasterize,
    render_pool,
)
from egr_pipeline.slots import RunCancelled


def _transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    return is_transient(state.result(raise_on_failure=False))


@task(
    name="rasterize",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 4, 16],
    retry_condition_fn=_transient,
)
def rasterize_document(
    item: DocItem, workspace: str, spec: RenderSpec, storage_options: dict[str, Any]
) -> RasterizedDoc:
    """Fetch one PDF and render its first ``spec.max_pages`` pages in the process's sandbox
    pool; unusable PDFs (and pages) become a status naming the file and page.

    A document not started because the run is stopping gets status ``cancelled``.
    """
    if stopping.STOP.is_set():
        return failed(item, RunCancelled("not rendered, the run is stopping"))
    faults.checkpoint("rasterize")
    return rasterize(
        item, workspace, max_pages=spec.max_pages, max_side=spec.max_side,
        max_pixels=spec.max_pixels, storage_options=storage_options, timeout_s=spec.timeout_s,
        pool=render_pool(spec.memory_mb, spec.workers),
    )  # fmt: skip
