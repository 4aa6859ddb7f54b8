"""The sandbox's child side: set the memory limit, then import PyMuPDF, open and render one job's
pages and stream them back one message each (:func:`worker_main` is the spawn entry point).
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import resource
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from PIL import Image

from egr_core import errors
from egr_pipeline.sandbox.jobs import OK, ImageFormat, PageResult, RenderJob

logger = logging.getLogger(__name__)


#: Memory (MB) the worker may hold beyond its start-up size between documents before MuPDF's
#: cache is emptied (at most an eighth of the documents' budget): emptying it after every
#: document made the next one reload its fonts (1.2 ms of a 9 ms document), keeping it all
#: would eat the documents' memory budget.
STORE_KEPT_MB = 64
#: (RSS at start-up, RSS the cache may add) in KiB, set by :func:`worker_main`.
_KEEP_KIB = [0, 0]


def proc_status_kib(field_name: str, pid: int | str = "self") -> int | None:
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
    kib = proc_status_kib("VmSize")
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
            budget = {"max_pixels": job.max_pixels, "max_side": job.max_side}
            if job.image_format == "none":  # rendered to check it, the pixels are not wanted
                dpi, w, h = doc.vet_page(i, **budget)
                data = None
            else:
                rp = doc.render_page(i, **budget)
                dpi, w, h = rp.dpi, rp.width_px, rp.height_px
                data = _encode(rp.image, job.image_format)
                del rp
            res = PageResult(
                i, OK, geometry=geom, dpi=dpi, width_px=w, height_px=h,
                image_format=job.image_format, data=data, render_s=time.perf_counter() - t0,
            )  # fmt: skip
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
    data: bytes | None = None
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
    rss = proc_status_kib("VmRSS")
    if rss is None or rss - _KEEP_KIB[0] > _KEEP_KIB[1]:
        pymupdf.TOOLS.store_shrink(100)  # MuPDF's cache (fonts, images) would eat the budget
    warnings = pymupdf.TOOLS.mupdf_warnings()
    # VmHWM is this process's own peak RSS; ru_maxrss would include the parent's from before exec.
    hwm = proc_status_kib("VmHWM")
    rss_kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(("end", rss_kib / 1024.0, warnings[-2000:] if warnings else ""))


def worker_main(conn: Any, memory_mb: int, skip_layout: bool) -> None:
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
    _KEEP_KIB[:] = [proc_status_kib("VmRSS") or 0, min(STORE_KEPT_MB, memory_mb // 8) * 1024]
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
