"""The answer's page and clips re-rendered from the PDF the documents table names (local or in the
store's object store); a reason instead of an image when that fails.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from egr.show.data import ShowData
from egr.show.paint import PAGE_HEIGHT_PX
from egr_core.types import Box
from egr_pipeline.store import Store


def page_image(
    data: ShowData, store: Store | None = None, height_px: int = PAGE_HEIGHT_PX
) -> tuple[Image.Image | None, str | None]:
    """Re-render the answer's page from the PDF at ``data.uri``; ``(None, reason)`` if it fails."""

    def render(doc: Any) -> Image.Image:
        geo = doc.page_geometry(data.page)
        side = max(geo.width_pt, geo.height_pt)
        max_side = math.ceil(side * height_px / geo.height_pt)
        rendered = doc.render_page(data.page, max_pixels=max_side * max_side, max_side=max_side)
        return rendered.image

    return _with_pdf(data, store, render)


def clip_image(
    data: ShowData, store: Store | None, box: Box, long_side_px: int = 480
) -> tuple[Image.Image | None, str | None]:
    """A lossless re-render of ``box`` (normalised) of the answer's page from its PDF."""
    return _with_pdf(
        data, store, lambda doc: doc.render_clip(data.page, box, long_side_px=long_side_px)
    )


def _with_pdf(
    data: ShowData, store: Store | None, fn: Any
) -> tuple[Image.Image | None, str | None]:
    """``(fn(open document).convert("RGB"), None)``, or ``(None, reason)`` when that fails."""
    from egr_core.documents import open_pdf
    from egr_core.errors import EgrError
    from egr_pipeline.sources import is_url, read_source

    if data.page is None:
        return None, f"the item has no page (status {data.status})"
    if data.uri is None:
        return None, "the documents table has no uri for it"
    fs = None
    if store is not None and not store.local and is_url(data.uri):
        proto = data.uri.split("://", 1)[0]
        protos = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
        fs = store.fs if proto in protos else None
    try:
        pdf = read_source(data.uri, fs)
        with open_pdf(pdf, name=data.uri) as doc:
            return fn(doc).convert("RGB"), None
    except (EgrError, OSError, ValueError, IndexError) as exc:
        return None, f"{data.uri}: {exc}"
