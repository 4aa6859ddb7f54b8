"""The global concurrency limit that bounds model work (one slot per GPU)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.context import ConcurrencyContext
from prefect.concurrency.sync import concurrency

#: Leases of the GPU limit held by this process right now (lease id -> limit name).
_HELD: dict[Any, str] = {}
_HELD_LOCK = threading.Lock()


@task(name="ensure-gpu-limit", cache_policy=NO_CACHE)
def ensure_gpu_limit(name: str, slots: int) -> None:
    """Create (or resize) the global concurrency limit ``name`` with ``slots`` slots.

    The answer task acquires it with ``strict=True``, so it must exist before any model work.
    """
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)


@contextlib.contextmanager
def gpu_slot(name: str) -> Iterator[None]:
    """Hold one slot of the global limit ``name`` (strict: the limit must exist), remembering
    its lease so that :func:`release_held_slots` can return it if the process must stop now."""
    with concurrency(name, occupy=1, strict=True):
        ctx = ConcurrencyContext.get()  # the task's context records the lease just granted
        mine = list(ctx.cleanup_lease_ids) if ctx is not None else []
        with _HELD_LOCK:
            _HELD.update(dict.fromkeys(mine, name))
        try:
            yield
        finally:
            with _HELD_LOCK:
                for lease in mine:
                    _HELD.pop(lease, None)


def release_held_slots() -> int:
    """Release the GPU-limit leases this process holds (best effort; for a process about to
    exit abruptly, e.g. on Ctrl-C). Without it, a slot held by a killed run stays taken in the
    API's database: the embedded server keeps leases in memory and runs no lease reaper, so
    every later run would wait for that slot forever. Returns how many were released."""
    with _HELD_LOCK:
        leases = list(_HELD)
        _HELD.clear()
    if not leases:
        return 0
    n = 0
    with get_client(sync_client=True) as client:
        for lease in leases:
            with contextlib.suppress(Exception):
                client.release_concurrency_slots_with_lease(lease_id=lease)
                n += 1
    return n
