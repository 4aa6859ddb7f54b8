"""The global concurrency limit that bounds model work (one slot per GPU)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client


@task(name="ensure-gpu-limit", cache_policy=NO_CACHE)
def ensure_gpu_limit(name: str, slots: int) -> None:
    """Create (or resize) the global concurrency limit ``name`` with ``slots`` slots.

    The answer task acquires it with ``strict=True``, so it must exist before any model work.
    """
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)
