"""Render untrusted PDFs in a worker process with a memory limit and a wall-clock timeout.

A malformed or hostile PDF can make MuPDF allocate gigabytes (decompression bombs, huge images)
or loop for a long time. Each document is therefore opened in its own *spawned* process:

- ``RLIMIT_AS`` caps the worker's address space at its size after start-up plus ``memory_mb``,
  so an allocation bomb fails inside MuPDF (-> ``out_of_memory``) instead of taking the host down;
- the parent enforces ``timeout_s`` of wall-clock time and kills the worker (-> ``timeout``);
- a worker that dies by a signal or exits abnormally becomes ``crashed``.

Pages stream back one message each, so a worker that dies on page 7 still delivers pages 0-6.
Every outcome is a :class:`DocumentResult` with a status string (the ``status`` attribute of the
matching :mod:`egr_core.errors` class) and a message naming the file and page; nothing raises
unless the caller asks for it with :meth:`DocumentResult.raise_for_status`.

Spawn-safe: the worker entry point is a module-level function and only picklable dataclasses
cross the pipe. Scripts that call :func:`run_jobs` need the usual ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing as mp
import pickle
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from egr_core import errors

if TYPE_CHECKING:  # imported lazily: the worker must set its limits before loading PyMuPDF
    from egr_core.documents import DocLimits, PageGeometry

logger = logging.getLogger(__name__)

__all__ = ["DocumentResult", "PageResult", "RenderJob", "WorkerPool", "run_job", "run_jobs"]

ImageFormat = Literal["png", "raw", "none"]

OK = "ok"
PARTIAL = "partial"  # some requested pages rendered, some failed

_STATUS_ERRORS: dict[str, type[errors.DocumentError]] = {
    cls.status: cls
    for cls in (
        errors.EncryptedDocumentError,
        errors.CorruptDocumentError,
        errors.EmptyDocumentError,
        errors.PageRenderError,
        errors.TooLargeError,
        errors.RenderTimeoutError,
        errors.OutOfMemoryError,
        errors.WorkerCrashError,
        errors.UnreadableSourceError,
    )
}


@dataclass(frozen=True, slots=True)
class RenderJob:
    """What to do with one document.

    Attributes:
        source: Local path or fsspec URL, read inside the worker; with ``data`` just a label.
        data: The bytes, when the caller already has them.
        name: Label for errors (default: ``source``).
        password: For encrypted files.
        pages: 0-based pages to render; None = all pages, at most ``first_pages`` of them.
        first_pages: With ``pages=None``, render only the first N pages (None = every page).
        max_pixels, max_side: Pixel budget per page (see ``PdfDocument.render_page``).
        image_format: "png" (PNG bytes), "raw" (RGB bytes, see :meth:`PageResult.array`) or
            "none" (geometry and render check only, nothing shipped back).
        limits: Document limits applied inside the worker (None = ``DocLimits()``).
        timeout_s: Per-document wall-clock limit overriding the runner's ``timeout_s``.
    """

    source: str
    data: bytes | None = field(default=None, repr=False)
    name: str | None = None
    password: str | None = field(default=None, repr=False)
    pages: tuple[int, ...] | None = None
    first_pages: int | None = None
    max_pixels: int = 2_000_000
    max_side: int = 2048
    image_format: ImageFormat = "png"
    limits: DocLimits | None = None
    timeout_s: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.source


@dataclass(frozen=True, slots=True)
class PageResult:
    """One page: geometry, the render (unless it failed) and its status."""

    index: int
    status: str
    error: str | None = None
    geometry: PageGeometry | None = None
    dpi: float | None = None
    width_px: int = 0
    height_px: int = 0
    image_format: ImageFormat = "none"
    data: bytes | None = field(default=None, repr=False)
    render_s: float = 0.0

    def image(self) -> Image.Image:
        """The render as a PIL RGB image."""
        if self.data is None:
            raise ValueError(f"page {self.index}: no image ({self.status}: {self.error})")
        if self.image_format == "png":
            img = Image.open(io.BytesIO(self.data))
            img.load()
            return img.convert("RGB")
        return Image.frombytes("RGB", (self.width_px, self.height_px), self.data)

    def array(self) -> np.ndarray:
        """The render as a (H, W, 3) uint8 array."""
        if self.image_format == "raw" and self.data is not None:
            return np.frombuffer(self.data, np.uint8).reshape(self.height_px, self.width_px, 3)
        return np.asarray(self.image())


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """Everything the sandbox learnt about one document."""

    source: str
    name: str
    status: str
    error: str | None = None
    doc_id: str | None = None
    n_pages: int | None = None
    title: str | None = None
    is_repaired: bool = False
    pages: tuple[PageResult, ...] = ()
    warnings: str = ""
    elapsed_s: float = 0.0
    max_rss_mb: float | None = None
    exitcode: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def raise_for_status(self) -> None:
        """Raise the typed :class:`~egr_core.errors.DocumentError` for a failed document."""
        if self.status in (OK, PARTIAL):
            return
        cls = _STATUS_ERRORS.get(self.status, errors.DocumentError)
        raise cls(self.name, self.error or self.status)


# ----------------------------------------------------------------------------- worker side --
def _proc_status_kib(field_name: str, pid: int | str = "self") -> int | None:
    """A ``/proc/<pid>/status`` field in KiB (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _vm_size_bytes() -> int | None:
    kib = _proc_status_kib("VmSize")
    return None if kib is None else kib * 1024


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at the current size plus ``memory_mb``; no core dumps."""
    base = _vm_size_bytes() or 0
    limit = base + memory_mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _encode(img: Image.Image, fmt: ImageFormat) -> bytes | None:
    if fmt == "none":
        return None
    if fmt == "raw":
        return img.tobytes()
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _page_error(index: int, exc: BaseException, label: str) -> PageResult:
    if isinstance(exc, errors.DocumentError):
        return PageResult(index, exc.status, str(exc))
    if isinstance(exc, MemoryError):
        msg = f"{label}, page {index}: out of memory (Python MemoryError)"
        return PageResult(index, errors.OutOfMemoryError.status, msg)
    msg = f"{label}, page {index}: {type(exc).__name__}: {exc}"
    return PageResult(index, errors.PageRenderError.status, msg)


def _render_pages(conn: Any, job: RenderJob, doc: Any) -> None:
    if job.pages is not None:
        indices: Sequence[int] = job.pages
    else:
        n = doc.n_pages if job.first_pages is None else min(job.first_pages, doc.n_pages)
        indices = range(n)
    for i in indices:
        t0 = time.perf_counter()
        geom = None
        try:
            if not 0 <= i < doc.n_pages:
                raise errors.PageRenderError(job.label, f"no such page ({doc.n_pages})", page=i)
            geom = doc.page_geometry(i)
            rp = doc.render_page(i, max_pixels=job.max_pixels, max_side=job.max_side)
            data = _encode(rp.image, job.image_format)
            res = PageResult(
                i,
                OK,
                geometry=geom,
                dpi=rp.dpi,
                width_px=rp.width_px,
                height_px=rp.height_px,
                image_format=job.image_format,
                data=data,
                render_s=time.perf_counter() - t0,
            )
            del rp
        except (errors.DocumentError, MemoryError, RuntimeError, ValueError) as exc:
            res = _page_error(i, exc, job.label)
            if geom is not None:
                res = PageResult(i, res.status, res.error, geometry=geom)
        conn.send(("page", res))


def _reset_peak_rss() -> None:
    """Reset VmHWM so the next reading is this document's peak (Linux >= 4.0; else no-op)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _do_job(conn: Any, job: RenderJob) -> None:
    """Open and render one document, streaming ("doc" | "page" | "error")* then "end"."""
    import pymupdf

    from egr_core.documents import DocLimits, open_pdf

    limits = job.limits or DocLimits()
    pymupdf.TOOLS.reset_mupdf_warnings()
    _reset_peak_rss()
    try:
        if job.data is not None:
            data = job.data
        else:
            from egr_pipeline.sources import read_source

            data = read_source(job.source, max_bytes=limits.max_bytes)
        with open_pdf(data, name=job.label, password=job.password, limits=limits) as doc:
            meta = {
                "doc_id": doc.doc_id,
                "n_pages": doc.n_pages,
                "title": doc.title,
                "is_repaired": doc.is_repaired,
            }
            conn.send(("doc", meta))
            _render_pages(conn, job, doc)
    except errors.DocumentError as exc:
        conn.send(("error", exc.status, str(exc)))
    except MemoryError:
        conn.send(("error", errors.OutOfMemoryError.status, f"{job.label}: out of memory"))
    except Exception as exc:  # noqa: BLE001 - the sandbox turns every failure into a status
        conn.send(("error", errors.CorruptDocumentError.status, f"{job.label}: {exc!r}"))
    data = None
    pymupdf.TOOLS.store_shrink(100)  # drop MuPDF's cache between documents
    warnings = pymupdf.TOOLS.mupdf_warnings()
    # VmHWM is this process's own peak RSS; ru_maxrss would include the parent's from before exec.
    hwm = _proc_status_kib("VmHWM")
    rss_kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(("end", rss_kib / 1024.0, warnings[-2000:] if warnings else ""))


def _worker_main(conn: Any, memory_mb: int, skip_layout: bool) -> None:
    """Worker entry point (runs in the spawned process): serve pickled jobs until None.

    Jobs arrive pickled so that nothing imports PyMuPDF before this function decides how:
    ``skip_layout`` blocks the ``pymupdf.layout`` and ``pymupdf4llm`` add-ons that PyMuPDF 2.0
    imports when present (ONNX models: ~1-2 s of start-up and ~100 MB that rendering never uses);
    PyMuPDF treats them as optional and catches the ImportError.

    A Ctrl-C in the terminal reaches the whole process group; the worker ignores it (its parent
    decides when it ends, and it ends by itself when the parent's pipe closes).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if skip_layout:
        for mod in ("pymupdf.layout", "pymupdf4llm"):
            sys.modules.setdefault(mod, None)  # type: ignore[arg-type]
    import pymupdf

    import egr_core.documents  # noqa: F401 - loaded before the limit is set

    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    _limit_memory(memory_mb)  # after the imports: the budget is for the documents alone
    try:
        conn.send(("ready",))
        while True:
            try:
                payload = conn.recv()
            except EOFError:
                break
            if payload is None:
                break
            _do_job(conn, pickle.loads(payload))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent is gone (killed or interrupted): nothing to report to
    conn.close()


# ----------------------------------------------------------------------------- parent side --
def _vm_hwm_mb(pid: int) -> float | None:
    kib = _proc_status_kib("VmHWM", pid)
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
            target=_worker_main, args=(child, memory_mb, skip_layout), daemon=True
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
