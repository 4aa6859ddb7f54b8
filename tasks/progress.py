"""Progress reporting from a running flow to whoever started it (the CLI's progress bars).

The flow registers futures per stage with :func:`add`; a reporter installed with
:func:`set_reporter` (the CLI does, in its own process) sees them and polls ``done()`` on the
underlying concurrent/Dask futures, so the bars move as tasks finish wherever they run. With no
reporter (a deployment run) these calls do nothing.

:func:`settle` yields futures as they complete, with either the result or the exception, so the
flow can turn a task that failed for good into a status instead of a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from prefect.futures import PrefectFuture, as_completed

T = TypeVar("T")


class Reporter(Protocol):
    def add(self, stage: str, futures: Sequence[Any]) -> None:
        """Start tracking ``futures`` (objects with ``done() -> bool``) under ``stage``."""
        ...

    def count(self, stage: str, total: int | None = None, advance: int = 0) -> None:
        """A counter bar (e.g. questions): set its total and/or advance it."""
        ...


_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    """Install (or with None remove) the process-wide reporter."""
    global _reporter
    _reporter = reporter


def add(stage: str, futures: Iterable[PrefectFuture[Any]]) -> list[PrefectFuture[Any]]:
    """Track ``futures`` under ``stage`` (when a reporter is installed); returns them as a list."""
    futures = list(futures)
    if _reporter is not None:
        _reporter.add(stage, [getattr(f, "wrapped_future", f) for f in futures])
    return futures


def total(stage: str, n: int) -> None:
    """Set the total of the counter ``stage`` (e.g. the questions a run will answer)."""
    if _reporter is not None:
        _reporter.count(stage, total=n)


def advance(stage: str, n: int) -> None:
    """Advance the counter ``stage`` by ``n`` (called from tasks; a no-op in other processes,
    e.g. on Dask workers, where no reporter is installed)."""
    if _reporter is not None and n:
        _reporter.count(stage, advance=n)


def settle(
    futures: Sequence[PrefectFuture[T]], keys: Sequence[Any]
) -> Iterator[tuple[Any, T | BaseException]]:
    """``(key, result or exception)`` for each future, in completion order.

    ``keys[i]`` names ``futures[i]`` (e.g. the work item it was submitted for).
    """
    by_id = {id(f): k for f, k in zip(futures, keys, strict=True)}
    for fut in as_completed(list(futures)):
        try:
            yield by_id[id(fut)], fut.result()
        except Exception as exc:  # noqa: BLE001 - the caller turns it into a status
            yield by_id[id(fut)], exc
