"""Rasterize task: one per chunk of documents (``RunParams.per_task``), each rendered in a
sandboxed worker. A transient I/O error is retried for that document alone; a document that
still fails, times out or exhausts the sandbox's memory is a status, never its chunk-mates'
failure."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

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

#: Seconds waited before each retry of a document's transient I/O error (fetching from S3, ...).
RETRY_DELAYS_S = (1.0, 4.0, 16.0)


@task(name="rasterize", cache_policy=NO_CACHE)
def rasterize_documents(
    items: Sequence[DocItem], workspace: str, spec: RenderSpec, storage_options: dict[str, Any]
) -> list[RasterizedDoc]:
    """Fetch each PDF and render its first ``spec.max_pages`` pages in the process's sandbox
    pool, one result per item in order; unusable PDFs (and pages) become a status naming the
    file and page, and a document not started because the run is stopping is ``cancelled``."""
    pool = render_pool(spec.memory_mb, spec.workers)
    return [_render(item, workspace, spec, storage_options, pool, stopping.STOP) for item in items]


def _render(item: DocItem, workspace: str, spec: RenderSpec, storage_options: dict[str, Any],
            pool: Any, stop: threading.Event) -> RasterizedDoc:  # fmt: skip
    for wait in (*RETRY_DELAYS_S, None):
        if stop.is_set():
            return failed(item, RunCancelled("not rendered, the run is stopping"))
        faults.checkpoint("rasterize")
        try:
            return rasterize(
                item, workspace, max_pages=spec.max_pages, max_side=spec.max_side,
                max_pixels=spec.max_pixels, storage_options=storage_options,
                timeout_s=spec.timeout_s, pool=pool,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the document becomes a status row
            if wait is None or not is_transient(exc) or stop.wait(wait):
                return failed(item, exc)
    raise AssertionError("unreachable")
