"""Model-work slots that cannot leak: one ``flock``-ed file per slot, held by a live process.

Why not Prefect's global concurrency limit: Prefect 3.8 keeps slot leases in the API server's
memory (``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE`` defaults to the in-memory store) and expires
them in the ``repossessor`` service, which the embedded (ephemeral) server that ``egr run`` starts
does not run. A run killed with -9 takes its server, and the only record of its lease, with it,
while the database keeps ``active_slots = 1``: every later run waits forever.

Here a slot is ``<dir>/<name>.<i>.lock`` locked with ``fcntl.flock(LOCK_EX)``. The kernel drops
the lock the moment the holding process ends, however it ends (return, exception, SIGTERM,
``kill -9``, OOM killer), so a slot is never held by a dead process and the next run starts at
once. A small ``<name>.<i>.json`` beside it names the holder (run, pid, host, since) so a waiting
run can say what it waits for. Slots are per machine (GPUs are): the directory is
``$EGR_SLOT_DIR``, else ``<tmp>/egr-slots-<uid>``; every run on the machine (CLI, nightly and
on-upload deployments, Dask workers) shares it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from egr_core.errors import EgrError

log = logging.getLogger(__name__)

#: Seconds between two "waiting for model slot" messages of one waiting task.
WAIT_MESSAGE_EVERY_S = 30.0
_LOCAL: dict[tuple[str, str, int], threading.Semaphore] = {}
_LOCAL_LOCK = threading.Lock()


class SlotTimeout(EgrError):
    """No model slot became free within the run's ``slot_timeout_s``."""

    status = "slot_timeout"


class RunCancelled(EgrError):
    """The run was asked to stop (SIGTERM, Ctrl-C) before this work started."""

    status = "cancelled"


def slot_dir(configured: str | None = None) -> Path:
    """Where the slot files live: ``configured``, else ``$EGR_SLOT_DIR``, else a per-user folder
    in the machine's temp dir."""
    raw = configured or os.environ.get("EGR_SLOT_DIR")
    path = Path(raw) if raw else Path(tempfile.gettempdir()) / f"egr-slots-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def holders(name: str, slots: int, directory: str | None = None) -> list[dict]:
    """The holder records of the slots of ``name`` that are held right now (lock taken)."""
    d = slot_dir(directory)
    out = []
    for i in range(slots):
        fd = os.open(d / f"{name}.{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            out.append(_read_holder(d / f"{name}.{i}.json") | {"slot": i})
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return out


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def describe(held: list[dict]) -> str:
    """``run R (pid P on H) since T`` for each holder, or "an unknown holder"."""
    parts = [
        f"run {h.get('run_id', '?')} (pid {h.get('pid', '?')} on {h.get('host', '?')}) "
        f"since {h.get('since', '?')}"
        for h in held
    ]
    return "; ".join(parts) or "a holder that just left"


@contextlib.contextmanager
def model_slot(
    name: str,
    slots: int,
    *,
    run_id: str,
    timeout_s: float,
    directory: str | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] | None = None,
    poll_s: float = 0.2,
) -> Iterator[int]:
    """Hold one of the ``slots`` slots of ``name`` for the ``with`` block; yields its index.

    Waits while all are held, saying what it waits for (``say``, default the module logger) at
    once and every :data:`WAIT_MESSAGE_EVERY_S` when another run holds them. Tasks of one
    process first queue among themselves (``timeout_s`` does not count that wait).

    Raises:
        SlotTimeout: no slot came free within ``timeout_s`` (the message names the holders).
        RunCancelled: ``stop`` was set while waiting.
    """
    d = slot_dir(directory)
    say = say or log.warning
    # Tasks of this process queue here first: waiting behind the process's own model work is
    # progress, not a hang, so only the wait for other processes counts against timeout_s.
    with _LOCAL_LOCK:
        local = _LOCAL.setdefault((str(d), name, slots), threading.Semaphore(slots))
    while not local.acquire(timeout=poll_s):
        if stop is not None and stop.is_set():
            raise RunCancelled(f"run {run_id}: stopped while waiting for model slot {name}")
    try:
        with _flock_slot(d, name, slots, run_id, timeout_s, directory, stop, say, poll_s) as i:
            yield i
    finally:
        local.release()


@contextlib.contextmanager
def _flock_slot(
    d: Path, name: str, slots: int, run_id: str, timeout_s: float, directory: str | None,
    stop: threading.Event | None, say: Callable[[str], None], poll_s: float,
) -> Iterator[int]:  # fmt: skip
    t0 = time.monotonic()
    next_msg = t0
    while True:
        for i in range(slots):
            fd = os.open(d / f"{name}.{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            info = d / f"{name}.{i}.json"
            me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "thread": threading.current_thread().name,
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
            tmp = info.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(me), encoding="utf-8")
            tmp.replace(info)
            try:
                yield i
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if stop is not None and stop.is_set():
            raise RunCancelled(f"run {run_id}: stopped while waiting for model slot {name}")
        now = time.monotonic()
        if now - t0 >= timeout_s:
            raise SlotTimeout(
                f"run {run_id}: gave up after waiting {timeout_s:g} s for model slot {name} "
                f"({slots} slot(s), dir {d}), held by {describe(holders(name, slots, directory))}"
            )
        if now >= next_msg:
            held = holders(name, slots, directory)
            # Waiting behind this run's own documents is normal: say so only for other runs.
            if any(h.get("run_id") != run_id for h in held):
                say(f"waiting for model slot {name}, held by {describe(held)}")
                next_msg = now + WAIT_MESSAGE_EVERY_S
        time.sleep(poll_s)
