"""The sandbox's parent side: spawned workers with a wall-clock timeout, crash and out-of-memory
classification, and a pool that keeps them warm across documents (:func:`run_job`,
:class:`WorkerPool`, :func:`run_jobs`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import pickle
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from egr_core import errors
from egr_pipeline.sandbox.jobs import OK, PARTIAL, DocumentResult, PageResult, RenderJob
from egr_pipeline.sandbox.worker import proc_status_kib, worker_main

logger = logging.getLogger(__name__)


def _vm_hwm_mb(pid: int) -> float | None:
    kib = proc_status_kib("VmHWM", pid)
    return None if kib is None else kib / 1024.0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class _Worker:
    """One spawned worker process, reused across documents until it fails or is recycled."""

    START_TIMEOUT_S = 120.0

    def __init__(self, memory_mb: int, skip_layout: bool) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=worker_main, args=(child, memory_mb, skip_layout), daemon=True
        )
        self.proc.start()
        child.close()
        self.jobs_done = 0
        self.ready = False

    def _wait_ready(self) -> str | None:
        """None when ready, else why the worker could not start."""
        if self.ready:
            return None
        if not self.conn.poll(self.START_TIMEOUT_S):
            return f"worker did not start within {self.START_TIMEOUT_S:g} s"
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            return "worker died while starting"
        self.ready = msg == ("ready",)
        return None if self.ready else f"unexpected worker message {msg[0]!r}"

    def close(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()

    def run(self, job: RenderJob, timeout_s: float) -> tuple[DocumentResult, bool]:
        """Run one job; returns (result, worker still usable)."""
        if job.timeout_s is not None:
            timeout_s = job.timeout_s
        t0 = time.perf_counter()
        meta: dict[str, Any] = {}
        pages: list[PageResult] = []
        status: str | None = None
        error: str | None = None
        warnings = ""
        rss_mb: float | None = None
        ended = False
        start_error = self._wait_ready()
        if start_error is None:
            t0 = time.perf_counter()  # start-up does not count against the document
            self.conn.send(pickle.dumps(job))
        else:
            status, error = errors.WorkerCrashError.status, f"{job.label}: {start_error}"
        deadline = t0 + timeout_s
        while status is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                status = errors.RenderTimeoutError.status
                error = (
                    f"{job.label}: no result after {timeout_s:g} s "
                    f"({len(pages)} page(s) done); worker killed"
                )
                self.proc.kill()
                break
            if not self.conn.poll(min(remaining, 0.05)):
                hwm = _vm_hwm_mb(self.proc.pid) if self.proc.pid else None
                if hwm is not None:
                    rss_mb = max(rss_mb or 0.0, hwm)
                continue
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break  # the worker died; its exit code says how
            kind = msg[0]
            if kind == "doc":
                meta = msg[1]
            elif kind == "page":
                pages.append(msg[1])
            elif kind == "error":
                status, error = msg[1], msg[2]
            elif kind == "end":
                rss_mb, warnings, ended = msg[1], msg[2], True
                break
        if status is not None and not ended and status != errors.RenderTimeoutError.status:
            # an "error" message arrives before "end": wait for the end of this job
            while self.conn.poll(max(deadline - time.perf_counter(), 0.0)):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "end":
                    rss_mb, warnings, ended = msg[1], msg[2], True
                    break
        alive = ended and self.proc.is_alive()
        exitcode = None
        if not alive:
            self.proc.join(timeout=5)
            if self.proc.is_alive():  # pragma: no cover - ignored SIGKILL
                self.proc.kill()
                self.proc.join(timeout=5)
            exitcode = self.proc.exitcode
        if status is None and not ended:
            if exitcode is not None and exitcode < 0:
                how = f"killed by {_signal_name(exitcode)}"
                if exitcode == -signal.SIGKILL:
                    how += " (possibly the kernel's OOM killer)"
            else:
                how = f"exited with code {exitcode}"
            nxt = _next_page(job, len(pages))
            where = f", page {nxt}" if meta and nxt is not None else ""
            status, error = errors.WorkerCrashError.status, f"{job.label}{where}: worker {how}"
        if status is None:
            status = _pages_status(pages)
            bad = [p for p in pages if p.status != OK]
            error = bad[0].error if bad else None
        self.jobs_done += 1
        result = DocumentResult(
            source=job.source,
            name=job.label,
            status=status,
            error=error,
            doc_id=meta.get("doc_id"),
            n_pages=meta.get("n_pages"),
            title=meta.get("title"),
            is_repaired=bool(meta.get("is_repaired", False)),
            pages=tuple(pages),
            warnings=warnings,
            elapsed_s=time.perf_counter() - t0,
            max_rss_mb=rss_mb,
            exitcode=exitcode,
        )
        return result, alive


def run_job(
    job: RenderJob, *, timeout_s: float = 60.0, memory_mb: int = 2048, skip_layout: bool = True
) -> DocumentResult:
    """Open and render one document in a fresh spawned worker.

    Args:
        job: What to render.
        timeout_s: Wall-clock limit for the document (worker start-up excluded).
        memory_mb: Address space the worker may add after start-up (``RLIMIT_AS``).
        skip_layout: Keep PyMuPDF's optional layout/LLM add-ons out of the worker.

    Returns:
        A :class:`DocumentResult`; never raises for a bad document.
    """
    worker = _Worker(memory_mb, skip_layout)
    try:
        return worker.run(job, timeout_s)[0]
    finally:
        worker.close()


def _next_page(job: RenderJob, done: int) -> int | None:
    """The page the worker was on after ``done`` pages were delivered."""
    if job.pages is None:
        return done
    return job.pages[done] if done < len(job.pages) else None


def _pages_status(pages: Sequence[PageResult]) -> str:
    if not pages or all(p.status == OK for p in pages):
        return OK
    if any(p.status == OK for p in pages):
        return PARTIAL
    return pages[0].status


class WorkerPool:
    """Sandboxed workers kept warm and shared by the threads of one process.

    :meth:`run` checks an idle worker out (or spawns one, at most ``size`` at a time), runs one
    document on it and puts it back, so spawn and import costs are paid once per worker, not
    once per document. A worker is replaced after a timeout or crash and after
    ``jobs_per_worker`` documents. Limits are as in :func:`run_job`; ``RenderJob.timeout_s``
    overrides ``timeout_s`` per document.
    """

    def __init__(
        self,
        *,
        size: int = 2,
        timeout_s: float = 60.0,
        memory_mb: int = 2048,
        skip_layout: bool = True,
        jobs_per_worker: int = 50,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.timeout_s, self.memory_mb = size, timeout_s, memory_mb
        self.skip_layout, self.jobs_per_worker = skip_layout, jobs_per_worker
        self.spawned = 0  # workers started so far (tests read it to prove reuse)
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    def _checkout(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerPool is closed")
            if self._idle:
                return self._idle.pop()
            if mp.current_process().daemon:
                raise RuntimeError(
                    "cannot start a sandbox worker from a daemonic process (e.g. a Dask worker "
                    "under a nanny); set DASK_DISTRIBUTED__WORKER__DAEMON=False"
                )
            self.spawned += 1
        return _Worker(self.memory_mb, self.skip_layout)

    def run(self, job: RenderJob) -> DocumentResult:
        """Run one document on a pooled worker (blocks while all ``size`` workers are busy).

        Returns:
            A :class:`DocumentResult`; never raises for a bad document.

        Raises:
            RuntimeError: the pool is closed, or this process may not start child processes.
        """
        with self._slots:
            worker = self._checkout()
            usable = False
            try:
                result, usable = worker.run(job, self.timeout_s)
            finally:
                keep = usable and worker.jobs_done < self.jobs_per_worker
                with self._lock:
                    keep = keep and not self._closed
                    if keep:
                        self._idle.append(worker)
                if not keep:
                    worker.close()
            return result

    def close(self) -> None:
        """Stop the idle workers; workers busy right now stop when their document ends."""
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for worker in idle:
            worker.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_jobs(
    jobs: Iterable[RenderJob],
    *,
    workers: int = 2,
    timeout_s: float = 60.0,
    memory_mb: int = 2048,
    skip_layout: bool = True,
    jobs_per_worker: int = 50,
) -> list[DocumentResult]:
    """Run many documents on ``workers`` sandboxed processes (a :class:`WorkerPool`).

    A worker serves documents one after another (start-up is paid once) and is replaced after a
    timeout or crash, and after ``jobs_per_worker`` documents so that leaks cannot accumulate.
    ``timeout_s`` and ``memory_mb`` apply per document, as in :func:`run_job`.

    Returns:
        One result per job, in the order given.
    """
    todo = list(jobs)
    if not todo:
        return []
    n = max(1, min(workers, len(todo)))
    with (
        WorkerPool(
            size=n, timeout_s=timeout_s, memory_mb=memory_mb, skip_layout=skip_layout,
            jobs_per_worker=jobs_per_worker,
        ) as pool,
        ThreadPoolExecutor(max_workers=n) as threads,
    ):  # fmt: skip
        return list(threads.map(pool.run, todo))
