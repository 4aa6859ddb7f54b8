"""Rasterize one document of a run in a sandbox, and reopen it later for grounding (no Prefect).

:func:`rasterize` fetches the bytes (local or fsspec URL) into a local copy in the workspace,
then opens and renders the first ``max_pages`` pages in a **sandboxed worker process**
(:mod:`egr_pipeline.sandbox`: spawned, ``RLIMIT_AS`` memory cap, wall-clock timeout), because the
PDFs are untrusted: a decompression bomb or a page that renders forever kills a worker, not the
run. Workers are pooled per process (:func:`render_pool`), so the spawn cost is paid once per
worker, not per document. The sandbox renders every page within the run's pixel budget to vet
it and sends back its geometry and size, not its pixels: encoding a page as PNG, sending and
writing it cost six times the render itself (``docs/performance.md``), and the answer step
re-renders the vetted page in-process faster than it could decode a PNG.

Every sandbox outcome becomes a :class:`RasterizedDoc` status with a reason naming the file (and
the page, when one is to blame): the documents layer's statuses (encrypted, corrupt, empty,
too_large), the sandbox's (timeout, out_of_memory, crashed, render_failed), and ``partial`` when
some pages rendered and others failed (the good pages are used). Transient I/O errors while
fetching (:func:`is_transient`) propagate so the caller can retry them.

:func:`open_view` reopens the local copy **in-process** for the answer step (page images, page
geometry, lossless crop re-renders, text under a box). It is only called for documents the
sandbox opened and rendered (``RasterizedDoc.usable``), and page images and crops are only taken
from pages the sandbox rendered within its limits (a page image at exactly the vetted budget),
so the in-process PyMuPDF only ever sees vetted documents. Residual risk: a crop re-render is at
a higher DPI than the vetted page render (bounded by the crop's ``long_side_px``); see
``docs/orchestration.md``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from egr_core.errors import DocumentError
from egr_core.types import Question
from egr_pipeline.plan import DocItem, filesystem
from egr_pipeline.sandbox import DocumentResult, PageResult, RenderJob, WorkerPool

#: Long side (px) of the evidence crops stored in the evidence table.
EVIDENCE_CROP_PX = 384
#: Statuses of a document whose usable pages may still be grounded.
USABLE = frozenset({"ok", "partial"})


#: The default page budget: long side and total pixels of a page render.
MAX_SIDE, MAX_PIXELS = 1536, 2_000_000


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """How the rasterize step renders: page budget and the sandbox's limits.

    Attributes:
        max_pages: only the first ``max_pages`` pages are rendered (longer = truncated).
        max_side, max_pixels: pixel budget of one page render.
        timeout_s: wall-clock limit of one document in the sandbox (all its pages).
        memory_mb: address space a sandbox worker may add for a document (``RLIMIT_AS``).
        workers: sandbox worker processes per (flow or Dask worker) process.
    """

    max_pages: int = 50
    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS
    timeout_s: float = 120.0
    memory_mb: int = 2048
    workers: int = 2


@dataclass(frozen=True, slots=True)
class PageInfo:
    """One page the sandbox rendered: geometry in points and the render's size in pixels."""

    index: int
    width_pt: float
    height_pt: float
    rotation: int
    dpi: float
    width_px: int
    height_px: int


@dataclass(frozen=True, slots=True)
class RasterizedDoc:
    """The rasterize step's result; small and picklable (paths, numbers, strings)."""

    uri: str
    doc_id: str
    questions: tuple[Question, ...]
    n_bytes: int
    status: str = "ok"  # ok | partial | a DocumentError status (corrupt, timeout, ...) | io_error
    error: str | None = None
    pdf_path: str | None = None
    n_pages: int | None = None  # pages in the document
    pages: tuple[PageInfo, ...] = ()  # the rendered pages (at most max_pages)
    truncated: bool = False  # more pages than max_pages: only the first ones were processed
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    budget: tuple[int, int] = (MAX_SIDE, MAX_PIXELS)  # (max_side, max_pixels) pages rendered at

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def usable(self) -> bool:
        """The sandbox rendered at least one page: the answer step may open it in-process."""
        return self.status in USABLE and bool(self.pages) and self.pdf_path is not None


def is_transient(exc: BaseException) -> bool:
    """I/O errors worth retrying: timeouts, connection and OS errors (not document errors)."""
    if isinstance(exc, DocumentError):
        return False
    transient: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, OSError)
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError

        transient = (*transient, BotoCoreError)
    return isinstance(exc, transient)


def failed(item: DocItem, exc: BaseException) -> RasterizedDoc:
    """The result of a document whose rasterization failed for good (retries exhausted)."""
    status = getattr(exc, "status", None) or ("io_error" if is_transient(exc) else "failed")
    return RasterizedDoc(
        item.uri, item.doc_id, item.questions, item.n_bytes, status=status,
        error=f"{item.uri}: {type(exc).__name__}: {exc}",
    )  # fmt: skip


_POOLS: dict[tuple[int, int], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def render_pool(memory_mb: int = 2048, size: int = 2) -> WorkerPool:
    """This process's pool of sandboxed render workers for (``memory_mb``, ``size``).

    Created on first use and kept for the life of the process (closed at exit), so every
    document of a run, and of later runs in the same process, reuses the warm workers.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get((memory_mb, size))
        if pool is None:
            pool = _POOLS[(memory_mb, size)] = WorkerPool(size=size, memory_mb=memory_mb)
        return pool


@atexit.register
def close_pools() -> None:
    """Stop every pooled render worker of this process."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def _fetch(item: DocItem, workspace: Path, storage_options: dict[str, Any] | None) -> Path:
    local = workspace / "docs" / f"{item.doc_id}.pdf"
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    fs = filesystem(item.uri, storage_options)
    data = fs.cat_file(item.uri)
    tmp = local.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(local)
    return local


def rasterize(
    item: DocItem,
    workspace: str,
    *,
    max_pages: int,
    max_side: int,
    max_pixels: int,
    storage_options: dict[str, Any] | None = None,
    timeout_s: float = 120.0,
    memory_mb: int = 2048,
    pool: WorkerPool | None = None,
) -> RasterizedDoc:
    """Fetch one document, then open and render its first ``max_pages`` pages in the sandbox.

    Args:
        item: the document and its pending questions.
        workspace: scratch folder (the local copy goes under ``docs/``).
        max_pages, max_side, max_pixels: page count and pixel budget (see :class:`RenderSpec`).
        storage_options: fsspec options for ``item.uri``.
        timeout_s, memory_mb: sandbox limits for this document.
        pool: the worker pool to use (default: :func:`render_pool` for ``memory_mb``).

    Returns:
        A :class:`RasterizedDoc`; bad documents come back with a status, they do not raise.

    Raises:
        OSError, TimeoutError, ...: transient I/O while fetching (see :func:`is_transient`).
    """
    local = _fetch(item, Path(workspace), storage_options)
    job = RenderJob(
        str(local), name=item.uri, first_pages=max_pages, max_pixels=max_pixels,
        max_side=max_side, image_format="none", timeout_s=timeout_s,
    )  # fmt: skip
    result = (pool or render_pool(memory_mb)).run(job)
    return from_result(item, local, result, max_pages, (max_side, max_pixels))


def from_result(
    item: DocItem,
    local: Path,
    result: DocumentResult,
    max_pages: int,
    budget: tuple[int, int],
) -> RasterizedDoc:
    """Turn the sandbox's :class:`DocumentResult` of a render at ``budget`` (max side, max
    pixels) into a :class:`RasterizedDoc`."""
    good = [p for p in result.pages if p.status == "ok"]
    bad = [p for p in result.pages if p.status != "ok"]
    pages = tuple(_info(p) for p in good)
    status, error = result.status, result.error
    if status == "partial" and not pages:
        status = bad[0].status if bad else "render_failed"
    elif status == "partial":
        error = f"{len(bad)} of {len(result.pages)} pages failed; first: {bad[0].error}"
    elif status == "timeout" and result.n_pages is not None:  # name the page it hung on
        reason = (error or "").removeprefix(f"{item.uri}: ")
        error = f"{item.uri}, page {len(result.pages)}: render timeout: {reason}"
    return RasterizedDoc(
        item.uri, item.doc_id, item.questions, item.n_bytes, status=status, error=error,
        pdf_path=str(local), n_pages=result.n_pages, pages=pages,
        truncated=result.n_pages is not None and result.n_pages > max_pages,
        title=result.title or None, budget=budget,
    )  # fmt: skip


def _info(page: PageResult) -> PageInfo:
    geo = page.geometry
    assert geo is not None and page.dpi is not None  # ok pages have them
    return PageInfo(
        page.index, float(geo.width_pt), float(geo.height_pt), int(geo.rotation), float(page.dpi),
        int(page.width_px), int(page.height_px),
    )  # fmt: skip


@dataclass
class DocView:
    """An open document for the answer step: page images and lossless crops/text by page."""

    doc: RasterizedDoc
    pdf: Any  # egr_core.documents.PdfDocument
    _images: dict[int, Image.Image] = field(default_factory=dict)

    @property
    def page_indices(self) -> list[int]:
        return [p.index for p in self.doc.pages]

    def page(self, i: int) -> PageInfo:
        return next(p for p in self.doc.pages if p.index == i)

    def image(self, i: int) -> Image.Image:
        """Page ``i`` as the sandbox rendered it: re-rendered here at the run's budget, which
        gives the vetted size (checked) and the same pixels."""
        if i not in self._images:
            info, (max_side, max_pixels) = self.page(i), self.doc.budget
            rp = self.pdf.render_page(i, max_pixels=max_pixels, max_side=max_side)
            if (rp.width_px, rp.height_px) != (info.width_px, info.height_px):
                raise RuntimeError(
                    f"{self.doc.uri}, page {i}: re-rendered at {rp.width_px} x {rp.height_px} px, "
                    f"the sandbox vetted {info.width_px} x {info.height_px} px"
                )
            self._images[i] = rp.image
        return self._images[i]

    def crop_fn(self, i: int) -> Any:
        """``(box, long_side_px) -> PIL image``: the page region re-rendered from the PDF."""
        return lambda box, px: self.pdf.render_clip(i, box, long_side_px=int(px))

    def text_fn(self, i: int) -> Any:
        return lambda box: self.pdf.text_in_box(i, box)

    def text_source(self, i: int) -> str:
        """``"text_layer"``, or ``"none"`` for a page without one (``evidence.text_source``)."""
        return "text_layer" if self.pdf.has_text_layer(i) else "none"

    def evidence_crop_fn(self, i: int) -> Any:
        return lambda box: self.pdf.render_clip(i, box, long_side_px=EVIDENCE_CROP_PX)

    def geometry(self, i: int) -> Any:
        return self.pdf.page_geometry(i)

    def size_pt(self, i: int) -> tuple[float, float]:
        """The displayed page's (width, height) in points (for legible-scale crops)."""
        g = self.pdf.page_geometry(i)
        return (float(g.width_pt), float(g.height_pt))


@contextlib.contextmanager
def open_view(doc: RasterizedDoc) -> Iterator[DocView]:
    """Reopen a document the sandbox rendered (``doc.usable``) in this process, for grounding.

    Raises:
        ValueError: the document was not rendered by the sandbox.
    """
    from egr_core.documents import open_pdf

    if not doc.usable or doc.pdf_path is None:
        raise ValueError(f"{doc.uri}: not rendered by the sandbox ({doc.status}: {doc.error})")
    with open_pdf(Path(doc.pdf_path).read_bytes(), name=doc.uri) as pdf:
        yield DocView(doc, pdf)
