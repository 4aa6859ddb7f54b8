"""Fault-injection points for the fault suite (``tests/faults``): a no-op unless ``EGR_FAULT``
is set.

``EGR_FAULT=<stage>[:<n>]`` kills this process's whole process group with SIGKILL the ``n``-th
time (default 1st) the process reaches :func:`checkpoint` of ``stage``: ``rasterize`` (a document
is about to be rendered), ``answer`` (a batch is about to be grounded, slot held), ``store``
(a group's table parts are written, its commit marker not yet). This is the ``kill -9`` of a
real crash at an exact moment, so tests need not guess timings.
"""

from __future__ import annotations

import os
import signal
import threading

_hits: dict[str, int] = {}
_lock = threading.Lock()


def checkpoint(stage: str) -> None:
    """Die here (SIGKILL to the process group) when ``EGR_FAULT`` names this stage and hit."""
    spec = os.environ.get("EGR_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != stage:
        return
    with _lock:
        _hits[stage] = _hits.get(stage, 0) + 1
        hit = _hits[stage]
    if hit == int(nth or 1):
        os.killpg(os.getpgid(0), signal.SIGKILL)
