"""Rasterize one document of a run, and reopen it later for grounding (no Prefect here).

:func:`rasterize` fetches the bytes (local or fsspec URL), keeps a local copy in the workspace,
opens the PDF through the documents layer, and renders the first ``max_pages`` pages to PNG
files under the workspace. A document the documents layer rejects (encrypted, corrupt, empty,
too large) becomes a :class:`RasterizedDoc` with that status and the reason; transient I/O
errors (:func:`is_transient`) propagate so the caller can retry them.

:func:`open_view` reopens the local copy for the answer step: page images, page geometry, the
lossless crop re-render and the text layer under a box.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from egr_core.errors import DocumentError
from egr_core.types import Question
from tasks.io.plan import DocItem, filesystem

#: Long side (px) of the evidence crops stored in the evidence table.
EVIDENCE_CROP_PX = 384


@dataclass(frozen=True, slots=True)
class PageInfo:
    """One rendered page: geometry in points and the render in pixels (a PNG in the workspace)."""

    index: int
    width_pt: float
    height_pt: float
    rotation: int
    dpi: float
    width_px: int
    height_px: int
    png: str


@dataclass(frozen=True, slots=True)
class RasterizedDoc:
    """The rasterize step's result; small and picklable (paths, numbers, strings)."""

    uri: str
    doc_id: str
    questions: tuple[Question, ...]
    n_bytes: int
    status: str = "ok"  # "ok" or a DocumentError status (corrupt, encrypted, ...) or io_error
    error: str | None = None
    pdf_path: str | None = None
    n_pages: int | None = None  # pages in the document
    pages: tuple[PageInfo, ...] = ()  # the processed pages (at most max_pages)
    truncated: bool = False  # more pages than max_pages: only the first ones were processed
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def is_transient(exc: BaseException) -> bool:
    """I/O errors worth retrying: timeouts, connection and OS errors (not document errors)."""
    if isinstance(exc, DocumentError):
        return False
    transient = (TimeoutError, ConnectionError, OSError)
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


def _fetch(item: DocItem, workspace: Path, storage_options: dict[str, Any] | None) -> Path:
    local = workspace / "docs" / f"{item.doc_id}.pdf"
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    fs = filesystem(item.uri, storage_options)
    data = fs.cat_file(item.uri)
    tmp = local.with_suffix(f".{os.getpid()}.tmp")
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
) -> RasterizedDoc:
    """Fetch, open and render the first ``max_pages`` pages of one document.

    Raises:
        OSError, TimeoutError, ...: transient I/O (see :func:`is_transient`); retry them.
    """
    from egr_core.documents import open_pdf

    base = RasterizedDoc(item.uri, item.doc_id, item.questions, item.n_bytes)
    local = _fetch(item, Path(workspace), storage_options)
    out_dir = Path(workspace) / "pages" / item.doc_id
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open_pdf(local.read_bytes(), name=item.uri) as doc:
            n = doc.n_pages
            pages = tuple(
                _render(doc, i, out_dir, max_side, max_pixels) for i in range(min(n, max_pages))
            )
            return replace(
                base, pdf_path=str(local), n_pages=n, pages=pages, truncated=n > max_pages,
                title=doc.title or None,
            )  # fmt: skip
    except DocumentError as exc:
        return replace(base, status=exc.status, error=str(exc), pdf_path=str(local))


def _render(doc: Any, i: int, out_dir: Path, max_side: int, max_pixels: int) -> PageInfo:
    geo = doc.page_geometry(i)
    png = out_dir / f"page-{i:05d}.png"
    page = doc.render_page(i, max_pixels=max_pixels, max_side=max_side)
    if not png.is_file():
        tmp = png.with_suffix(f".{os.getpid()}.tmp")
        page.image.save(tmp, format="PNG")
        tmp.replace(png)
    return PageInfo(
        i, float(geo.width_pt), float(geo.height_pt), int(geo.rotation), float(page.dpi),
        int(page.width_px), int(page.height_px), str(png),
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
        if i not in self._images:
            with Image.open(self.page(i).png) as im:
                self._images[i] = im.convert("RGB")
        return self._images[i]

    def crop_fn(self, i: int) -> Any:
        """``(box, long_side_px) -> PIL image``: the page region re-rendered from the PDF."""
        return lambda box, px: self.pdf.render_clip(i, box, long_side_px=int(px))

    def text_fn(self, i: int) -> Any:
        return lambda box: self.pdf.text_in_box(i, box)

    def evidence_crop_fn(self, i: int) -> Any:
        return lambda box: self.pdf.render_clip(i, box, long_side_px=EVIDENCE_CROP_PX)

    def geometry(self, i: int) -> Any:
        return self.pdf.page_geometry(i)


@contextlib.contextmanager
def open_view(doc: RasterizedDoc) -> Iterator[DocView]:
    """Reopen a rasterized document's local copy for grounding."""
    from egr_core.documents import open_pdf

    if doc.pdf_path is None:
        raise ValueError(f"{doc.uri}: not rasterized ({doc.status}: {doc.error})")
    with open_pdf(Path(doc.pdf_path).read_bytes(), name=doc.uri) as pdf:
        yield DocView(doc, pdf)
