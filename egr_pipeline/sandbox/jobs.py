"""What crosses the sandbox's pipe: a :class:`RenderJob` in, :class:`PageResult` messages and a
:class:`DocumentResult` out (picklable, frozen dataclasses; statuses are :mod:`egr_core.errors`'s).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from egr_core import errors

if TYPE_CHECKING:  # imported lazily: the worker must set its limits before loading PyMuPDF
    from egr_core.documents import DocLimits, PageGeometry


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
