"""Rasterize task: one per document; retried only on transient I/O errors."""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from tasks.io.plan import DocItem
from tasks.io.rasterize import RasterizedDoc, is_transient, rasterize


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
    item: DocItem, workspace: str, max_pages: int, max_side: int, max_pixels: int,
    storage_options: dict[str, Any],
) -> RasterizedDoc:  # fmt: skip
    """Fetch one PDF and render its first ``max_pages`` pages; unusable PDFs become a status."""
    return rasterize(
        item, workspace, max_pages=max_pages, max_side=max_side, max_pixels=max_pixels,
        storage_options=storage_options,
    )  # fmt: skip
