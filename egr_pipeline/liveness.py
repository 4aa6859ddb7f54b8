"""Run heartbeats on the output root, and marking dead runs ``crashed``.

A live run keeps ``ROOT/_leases/run_id=<id>.json`` fresh (host, pid, the pid's start time,
``expires_at`` = now + ttl, rewritten every ttl/4 by a thread). A run whose runs row still says
``running`` is dead when its process is gone (same host: the pid is not alive, or is another
process now) or when its heartbeat expired (other hosts, clock skew bounded by the ttl). The next
run that starts (or finishes) on the root writes the dead run's "end" row: status ``crashed``,
its committed counts, and who noticed. Its committed batches stay; its uncommitted work is
simply not done and is picked up by the plan like any pending item.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from egr_pipeline.records import RunContext

log = logging.getLogger(__name__)

LEASE_DIR = "_leases"
#: A heartbeat older than this marks a run on another host dead.
DEFAULT_TTL_S = 60.0


def _proc_start(pid: int) -> str | None:
    """The start time (clock ticks since boot) of ``pid``, or None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int, start: str | None) -> bool:
    if os.path.isdir("/proc"):
        now = _proc_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLease:
    """Keeps this run's heartbeat file fresh while the ``with`` block runs; removes it after."""

    def __init__(self, store: Any, run_id: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.store, self.run_id, self.ttl_s = store, run_id, float(ttl_s)
        self.path = posixpath.join(store.path, LEASE_DIR, f"run_id={run_id}.json")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="egr-heartbeat", daemon=True)

    def beat(self) -> None:
        now = datetime.now(UTC)
        body = json.dumps({
            "run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_start": _proc_start(os.getpid()), "heartbeat_at": now.isoformat(),
            "expires_at": (now + timedelta(seconds=self.ttl_s)).isoformat(),
        }).encode()  # fmt: skip
        fs = self.store.fs
        if self.store.local:
            fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            fs.pipe_file(tmp, body)
            fs.mv(tmp, self.path)
        else:
            fs.pipe_file(self.path, body)

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; ttl covers it
                log.warning("run %s: heartbeat to %s failed: %s", self.run_id, self.path, exc)

    def __enter__(self) -> RunLease:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.fs.rm(self.path)
        except (OSError, FileNotFoundError) as err:
            log.info("run %s: could not remove heartbeat %s: %s", self.run_id, self.path, err)


def read_lease(store: Any, run_id: str) -> dict[str, Any] | None:
    path = posixpath.join(store.path, LEASE_DIR, f"run_id={run_id}.json")
    try:
        return json.loads(store.fs.cat_file(path))
    except (OSError, FileNotFoundError, ValueError):
        return None


def why_dead(row: dict[str, Any], lease: dict[str, Any] | None, ttl_s: float) -> str | None:
    """Why the run of ``row`` (status running) is dead, or None while it may be alive."""
    now = datetime.now(UTC)
    if lease is None:
        started = row["started_at"]
        if now - started > timedelta(seconds=ttl_s):
            return f"no heartbeat file and started {started.isoformat(timespec='seconds')}"
        return None
    where = f"pid {lease.get('pid')} on {lease.get('host')}"
    if lease.get("host") == socket.gethostname():
        if not _pid_alive(int(lease["pid"]), lease.get("pid_start")):
            return f"its process ({where}) is gone, last heartbeat {lease.get('heartbeat_at')}"
        return None
    if datetime.fromisoformat(lease["expires_at"]) < now:
        return f"no heartbeat since {lease.get('heartbeat_at')} ({where})"
    return None


def mark_dead_runs(store: Any, me: str, ttl_s: float = DEFAULT_TTL_S) -> list[str]:
    """Write a ``crashed`` end row for every run of ``store`` that still says ``running`` but is
    dead; returns their run ids."""
    marked = []
    for rid, row in store.run_rows().items():
        if rid == me or row["phase"] == "end" or row["status"] != "running":
            continue
        reason = why_dead(row, read_lease(store, rid), ttl_s)
        if reason is None:
            continue
        ctx = RunContext(rid, row.get("model_id"), row.get("config_hash"), row["egr_version"])
        store.finish_run(
            ctx, status="crashed", error=f"run {rid} died without finishing: {reason}; "
            f"marked crashed by run {me}; its committed batches are kept",
        )  # fmt: skip
        with contextlib.suppress(OSError, FileNotFoundError):
            store.fs.rm(posixpath.join(store.path, LEASE_DIR, f"run_id={rid}.json"))
        log.warning("run %s was still 'running' but is dead (%s): marked crashed", rid, reason)
        marked.append(rid)
    return marked
