"""Task runner selection: threads in this process (default) or a Dask cluster (prefect-dask).

With Dask, each worker process keeps its own model loaded (``egr_pipeline.models.load_model`` is
cached per process), so a worker pays the load once however many documents it answers, and its
own pool of sandboxed render workers. Those are child processes, which a daemonic process may not
start: Dask workers must run with ``distributed.worker.daemon: False`` (set here for a local
cluster; for an external one start the workers with ``DASK_DISTRIBUTED__WORKER__DAEMON=False``).
"""

from __future__ import annotations

from typing import Any


def task_runner(*, dask_address: str | None = None, workers: int | None = None) -> Any:
    """A ``DaskTaskRunner`` for an existing scheduler (``dask_address``) or a new local cluster
    of ``workers`` single-threaded worker processes; None = the flow's default (threads)."""
    if dask_address is None and workers is None:
        return None
    import dask
    from prefect_dask import DaskTaskRunner

    if dask_address is not None:
        return DaskTaskRunner(address=dask_address)
    if workers is None or workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dask.config.set({"distributed.worker.daemon": False})  # the nanny reads it at worker start
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None},
    )  # fmt: skip
