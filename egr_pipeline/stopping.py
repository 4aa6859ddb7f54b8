"""Clean stop on SIGTERM and Ctrl-C: a process-wide flag the flow and the answer task check.

The first SIGTERM or SIGINT sets :data:`STOP`: no new document is started, a task waiting for a
model slot gives up, a task answering finishes (and commits) the batch in flight and returns, the
run row says ``cancelled``. A second signal stops at once (KeyboardInterrupt); that is still safe,
because nothing is half-visible in the store and slots are released by the kernel.

Handlers can only be installed from the main thread (``egr run`` runs the flow there, as does a
Prefect worker's flow-run process); elsewhere :func:`graceful` only resets the flag.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: Set when the process was asked to stop. Checked between batches and while waiting for a slot.
STOP = threading.Event()
#: The signal that set :data:`STOP` (for the exit code), or None.
received: list[int] = []


def _handler(signum: int, frame: Any) -> None:
    if STOP.is_set():
        raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
    received.append(signum)
    STOP.set()
    log.warning(
        "%s: stopping after the batch in flight (send it again to stop at once)",
        signal.Signals(signum).name,
    )


@contextlib.contextmanager
def graceful() -> Iterator[threading.Event]:
    """Reset :data:`STOP` and, on the main thread, route SIGTERM and SIGINT to it for the block."""
    STOP.clear()
    received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in old:
        signal.signal(s, _handler)
    try:
        yield STOP
    finally:
        for s, h in old.items():
            signal.signal(s, h)
