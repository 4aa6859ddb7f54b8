"""PDF documents: open, page geometry, budgeted rendering, lossless clip re-rendering, text layer.

Coordinates. egr's "page points" are the *displayed* page frame: after /Rotate and the CropBox,
origin at the top-left corner, y down, in PDF points (1/72 inch, times /UserUnit if any). A
normalised :class:`~egr_core.types.Box` is that frame divided by the page width and height. A
render at ``dpi`` maps a point to a pixel by one scale, ``px = pt * dpi / 72``, with pixel (0, 0)
at point (0, 0), in both directions (:meth:`PageGeometry.pt_to_px`, :meth:`PageGeometry.px_to_pt`).
:attr:`PageGeometry.pdf_to_page` is the affine map from PDF user space (the numbers in the file's
content stream, y up, MediaBox/CropBox origin wherever the file puts it) to page points; it is
MuPDF's own page transform (``pdf_page_transform``), so it agrees with what is rendered.

Safety. Every render checks its pixel count against :class:`DocLimits` *before* allocating: PIL's
decompression-bomb guard only looks at decoded image files and does not see a pixmap handed to
``Image.frombytes``. Untrusted files should still be rendered in a separate process with a memory
limit and a timeout (``egr_pipeline/sandbox/``); this module itself never forks.

A :class:`PdfDocument` wraps one MuPDF document and is not thread-safe; use one per thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import pymupdf
from PIL import Image
from pymupdf import mupdf

from egr_core.errors import (
    CorruptDocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    OutOfMemoryError,
    PageRenderError,
    TooLargeError,
)
from egr_core.pages import (
    TEXT_TOLERANCE_PT,
    Affine,
    DocLimits,
    PageGeometry,
    RenderedPage,
    Word,
    fit_render,
    text_in_box,
)
from egr_core.passwords import saslprep
from egr_core.types import Box

logger = logging.getLogger(__name__)

__all__ = ["DocLimits", "PageGeometry", "PdfDocument", "RenderedPage", "Word", "open_pdf"]

# Exceptions PyMuPDF/MuPDF raise on bad input: FileDataError is a RuntimeError, MuPDF's own
# errors derive from mupdf.FzErrorBase, and PyMuPDF raises ValueError for closed/locked docs.
_MUPDF_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, mupdf.FzErrorBase)
_RENDER_ERRORS: tuple[type[BaseException], ...] = (*_MUPDF_ERRORS, MemoryError)
_HEADER_WINDOW = 1024  # Acrobat accepts junk before "%PDF-" within the first 1024 bytes


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_source(
    source: bytes | str | Path, name: str | None, limits: DocLimits
) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return data, name or f"<bytes sha256:{_sha256(data)[:12]}>"
    if isinstance(source, str) and "://" in source:
        raise ValueError(
            f"{source}: open_pdf takes a local path or bytes; read URLs with "
            "egr_pipeline.sources.read_source() and pass the bytes"
        )
    path = Path(source)
    label = name or str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise TooLargeError(label, f"{size} bytes exceeds the limit of {limits.max_bytes}")
        return path.read_bytes(), label
    except OSError as exc:
        raise CorruptDocumentError(label, f"cannot read file: {exc.strerror or exc}") from exc


def open_pdf(
    source: bytes | str | Path,
    *,
    name: str | None = None,
    password: str | None = None,
    limits: DocLimits = DocLimits(),
) -> PdfDocument:
    """Open a PDF from a local path or its bytes.

    Args:
        source: Path, or the file's bytes (for fsspec/s3 URLs use ``egr_pipeline.sources``).
        name: Label used in errors and as :attr:`PdfDocument.name` (default: the path).
        password: User or owner password for encrypted files (tried as given, then SASLprep'd).
        limits: Size limits, checked before parsing and before any render.

    Returns:
        An open :class:`PdfDocument` (a context manager).

    Raises:
        TooLargeError: More bytes or pages than ``limits`` allow.
        CorruptDocumentError: Not a PDF, unreadable, or MuPDF cannot parse it.
        EncryptedDocumentError: A password is needed and none or a wrong one was given.
        EmptyDocumentError: The file opens with 0 pages (typically after a silent repair).
    """
    data, label = _read_source(source, name, limits)
    if len(data) > limits.max_bytes:
        raise TooLargeError(label, f"{len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise CorruptDocumentError(label, "file is empty (0 bytes)")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise CorruptDocumentError(
            label, f"not a PDF: no '%PDF-' header in the first {_HEADER_WINDOW} bytes"
        )
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except _MUPDF_ERRORS as exc:
        raise CorruptDocumentError(label, f"MuPDF cannot open it: {exc}") from exc
    try:
        if doc.needs_pass:
            if password is None:
                raise EncryptedDocumentError(label, "encrypted; a password is needed")
            if not any(doc.authenticate(p) for p in dict.fromkeys((password, saslprep(password)))):
                raise EncryptedDocumentError(label, "encrypted; the password given is wrong")
        try:
            n_pages = doc.page_count
        except _MUPDF_ERRORS as exc:
            raise CorruptDocumentError(label, f"page tree unreadable: {exc}") from exc
        repaired = bool(doc.is_repaired)
        if n_pages <= 0:
            how = " after MuPDF repaired a broken file" if repaired else ""
            raise EmptyDocumentError(label, f"0 pages{how}")
        if n_pages > limits.max_pages:
            raise TooLargeError(label, f"{n_pages} pages exceeds the limit of {limits.max_pages}")
    except BaseException:
        doc.close()
        raise
    return PdfDocument(doc, doc_id=_sha256(data), name=label, limits=limits)


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "malloc" in text or "out of memory" in text


class PdfDocument:
    """An open PDF. Use as a context manager or call :meth:`close`.

    Attributes:
        doc_id: sha256 hex digest of the file's bytes.
        name: The label errors use (path, URL or given name).
        n_pages: Page count (> 0).
        is_repaired: MuPDF had to repair the file's cross-reference table to open it.
    """

    _DISPLAY_LISTS = 4  # per-page display lists kept for repeated clip renders (zoom rounds)

    def __init__(self, doc: pymupdf.Document, *, doc_id: str, name: str, limits: DocLimits):
        self._doc = doc
        self.doc_id = doc_id
        self.name = name
        self.limits = limits
        self.n_pages: int = doc.page_count
        self.is_repaired = bool(doc.is_repaired)
        self._geometry: dict[int, PageGeometry] = {}
        self._lists: OrderedDict[int, pymupdf.DisplayList] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> PdfDocument:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._lists.clear()
        if not self._doc.is_closed:
            self._doc.close()

    def __repr__(self) -> str:
        return f"PdfDocument({self.name!r}, n_pages={self.n_pages}, doc_id={self.doc_id[:12]})"

    @property
    def title(self) -> str | None:
        """The /Title from the document metadata, or None when absent or unreadable."""
        try:
            title = (self._doc.metadata or {}).get("title")
        except _MUPDF_ERRORS:
            return None
        return (title.strip() or None) if isinstance(title, str) else None

    # -- pages ----------------------------------------------------------------------------
    def _page(self, i: int) -> pymupdf.Page:
        if not 0 <= i < self.n_pages:
            raise IndexError(f"{self.name}: page {i} out of range (document has {self.n_pages})")
        try:
            return self._doc.load_page(i)
        except _MUPDF_ERRORS as exc:
            raise PageRenderError(self.name, f"page cannot be loaded: {exc}", page=i) from exc

    def page_geometry(self, i: int) -> PageGeometry:
        """Geometry of page ``i`` (0-based).

        Raises:
            IndexError: ``i`` is out of range.
            PageRenderError: The page object cannot be loaded or has a degenerate size.
        """
        if i in self._geometry:
            return self._geometry[i]
        page = self._page(i)
        try:
            mb = page.mediabox  # raw /MediaBox, PDF user space
            crop = mupdf.FzRect(mupdf.FzRect.Fixed_UNIT)
            ctm = mupdf.FzMatrix()
            mupdf.pdf_page_transform(page._pdf_page(required=True), crop, ctm)
            rect = page.rect
            geom = PageGeometry(
                index=i,
                width_pt=float(rect.width),
                height_pt=float(rect.height),
                rotation=int(page.rotation) % 360,
                mediabox=(float(mb.x0), float(mb.y0), float(mb.x1), float(mb.y1)),
                cropbox=(float(crop.x0), float(crop.y0), float(crop.x1), float(crop.y1)),
                pdf_to_page=(ctm.a, ctm.b, ctm.c, ctm.d, ctm.e, ctm.f),
            )
        except (*_MUPDF_ERRORS,) as exc:
            raise PageRenderError(self.name, f"bad page geometry: {exc}", page=i) from exc
        self._geometry[i] = geom
        return geom

    def _display_list(self, i: int) -> pymupdf.DisplayList:
        dl = self._lists.get(i)
        if dl is not None:
            self._lists.move_to_end(i)
            return dl
        page = self._page(i)
        try:
            dl = page.get_displaylist(annots=True)
        except _MUPDF_ERRORS as exc:
            self._raise_render(i, exc, "cannot interpret the page content")
        self._lists[i] = dl
        while len(self._lists) > self._DISPLAY_LISTS:
            self._lists.popitem(last=False)
        return dl

    def _raise_render(self, i: int, exc: BaseException, what: str) -> NoReturn:
        if _is_oom(exc):
            raise OutOfMemoryError(self.name, f"{what}: out of memory ({exc})", page=i) from exc
        raise PageRenderError(self.name, f"{what}: {exc}", page=i) from exc

    def _check_pixels(self, i: int, w: int, h: int, what: str) -> None:
        lim = self.limits
        if w * h > lim.max_render_pixels or max(w, h) > lim.max_render_side:
            raise TooLargeError(
                self.name,
                f"{what} would be {w} x {h} = {w * h} pixels; limits are "
                f"{lim.max_render_pixels} pixels and {lim.max_render_side} px per side",
                page=i,
            )

    def _draw(self, i: int, matrix: Affine, w: int, h: int, area: pymupdf.Rect) -> mupdf.FzPixmap:
        """Run page ``i``'s display list through ``matrix`` into a white ``w x h`` RGB pixmap.

        ``matrix`` maps displayed page points to pixels; ``area`` (page points) culls content.
        """
        dl = self._display_list(i)
        try:
            rgb = mupdf.FzColorspace(mupdf.FzColorspace.Fixed_RGB)
            fzpix = mupdf.fz_new_pixmap_with_bbox(
                rgb, mupdf.FzIrect(0, 0, w, h), mupdf.FzSeparations(), 0
            )
            mupdf.fz_clear_pixmap_with_value(fzpix, 0xFF)
            dev = mupdf.fz_new_draw_device(mupdf.FzMatrix(*matrix), fzpix)
            try:
                clip = mupdf.FzRect(area.x0, area.y0, area.x1, area.y1)
                mupdf.fz_run_display_list(dl.this, dev, mupdf.FzMatrix(), clip, mupdf.FzCookie())
            finally:
                mupdf.fz_close_device(dev)
        except _RENDER_ERRORS as exc:
            self._raise_render(i, exc, f"rendering {w} x {h} px failed")
        return fzpix

    def _raster(self, i: int, matrix: Affine, w: int, h: int, area: pymupdf.Rect) -> Image.Image:
        """:meth:`_draw` as an RGB image."""
        fzpix = self._draw(i, matrix, w, h, area)
        try:
            pix = pymupdf.Pixmap("raw", fzpix)
            return Image.frombytes("RGB", (w, h), pix.samples_mv, "raw", "RGB", pix.stride)
        except _RENDER_ERRORS as exc:
            self._raise_render(i, exc, f"rendering {w} x {h} px failed")

    def _fit(
        self, i: int, max_pixels: int, max_side: int, max_dpi: float | None
    ) -> tuple[float, int, int, PageGeometry]:
        geom = self.page_geometry(i)
        zoom, w, h = fit_render(geom.width_pt, geom.height_pt, max_pixels, max_side, max_dpi)
        self._check_pixels(i, w, h, f"page render at {zoom * 72:.2f} dpi")
        return zoom, w, h, geom

    def render_page(
        self, i: int, *, max_pixels: int, max_side: int, max_dpi: float | None = None
    ) -> RenderedPage:
        """Render page ``i`` at the highest DPI whose raster fits the budget
        (:func:`~egr_core.pages.fit_render`), checked against :class:`DocLimits` before anything
        is allocated.

        Args:
            i: 0-based page index.
            max_pixels: Budget for width * height.
            max_side: Budget for the longer side.
            max_dpi: Optional ceiling on the DPI (tiny pages would otherwise be magnified).

        Raises:
            TooLargeError: The budget itself exceeds the document limits.
            PageRenderError / OutOfMemoryError: MuPDF failed on this page.
        """
        zoom, w, h, geom = self._fit(i, max_pixels, max_side, max_dpi)
        area = pymupdf.Rect(0, 0, geom.width_pt, geom.height_pt)
        img = self._raster(i, (zoom, 0.0, 0.0, zoom, 0.0, 0.0), w, h, area)
        return RenderedPage(i, img, dpi=zoom * 72.0, width_px=w, height_px=h, geometry=geom)

    def vet_page(self, i: int, *, max_pixels: int, max_side: int) -> tuple[float, int, int]:
        """Render page ``i`` at :meth:`render_page`'s scale and drop the pixels: the sandbox's
        check that the page renders within its limits (straight from the page: no display list
        is kept). Returns (dpi, width_px, height_px); raises as :meth:`render_page`."""
        zoom, w, h, _ = self._fit(i, max_pixels, max_side, None)
        page = self._page(i)
        try:
            page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, annots=True)
        except _RENDER_ERRORS as exc:
            self._raise_render(i, exc, f"rendering {w} x {h} px failed")
        return zoom * 72.0, w, h

    def render_clip(self, i: int, box: Box, *, long_side_px: int) -> Image.Image:
        """Re-render the part ``box`` of page ``i`` from its vector content (lossless zoom).

        The crop's longer side is exactly ``long_side_px`` and the shorter side is the nearest
        integer to the aspect ratio (at least 1 px). The image covers exactly ``box``: pixel edge 0
        is the box's left/top edge and pixel edge ``width``/``height`` its right/bottom edge, so
        ``Box.sub`` maps crop coordinates to page coordinates without error. The two axes' scales
        therefore differ by less than half a pixel over the short side.

        Raises:
            TooLargeError: The crop would exceed :class:`DocLimits`.
            PageRenderError / OutOfMemoryError: MuPDF failed on this page.
        """
        if long_side_px <= 0:
            raise ValueError(f"long_side_px must be positive, got {long_side_px}")
        geom = self.page_geometry(i)
        x0, y0, x1, y1 = geom.box_to_points(box)
        bw, bh = x1 - x0, y1 - y0
        if bw >= bh:
            w, h = long_side_px, max(1, round(long_side_px * bh / bw))
        else:
            w, h = max(1, round(long_side_px * bw / bh)), long_side_px
        self._check_pixels(i, w, h, f"clip {box.as_tuple()}")
        sx, sy = w / bw, h / bh
        matrix = (sx, 0.0, 0.0, sy, -x0 * sx, -y0 * sy)  # page points -> crop pixels
        return self._raster(i, matrix, w, h, pymupdf.Rect(x0, y0, x1, y1))

    # -- text -----------------------------------------------------------------------------
    def words(self, i: int) -> list[Word]:
        """All words of page ``i``'s text layer, in MuPDF's order, in displayed page points."""
        page = self._page(i)
        try:
            raw = page.get_text("words")  # unrotated page frame
            rot = page.rotation_matrix  # unrotated frame -> displayed frame
        except _MUPDF_ERRORS as exc:
            raise PageRenderError(self.name, f"text extraction failed: {exc}", page=i) from exc
        out = []
        for x0, y0, x1, y1, text, block, line, _ in raw:
            r = pymupdf.Rect(x0, y0, x1, y1) * rot
            out.append(Word(text, (r.x0, r.y0, r.x1, r.y1), int(block), int(line)))
        return out

    def has_text_layer(self, i: int) -> bool:
        """Whether page ``i`` has any word in its text layer (False for a scan without OCR)."""
        return bool(self.words(i))

    def text_in_box(self, i: int, box: Box, *, tol_pt: float = TEXT_TOLERANCE_PT) -> str:
        """Text of page ``i``'s words that overlap ``box``, in reading order, single spaces
        (:func:`egr_core.pages.text_in_box` has the rules)."""
        return text_in_box(self.words(i), self.page_geometry(i), box, tol_pt=tol_pt)
