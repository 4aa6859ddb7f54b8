"""Hostile PDFs for sandbox tests, built in memory (a few KB each)."""

from __future__ import annotations

import pymupdf


def hang_pdf(levels: int = 5, fanout: int = 100) -> bytes:
    """One page whose content draws a form XObject that draws the next one ``fanout`` times,
    ``levels`` deep: ``fanout ** (levels - 1)`` filled squares from ~1.5 KB of PDF.

    With the defaults that is 10^8 fills, minutes of rendering (10^6 take ~5 s), so a renderer
    without a timeout hangs on it.
    """
    doc = pymupdf.open()
    page = doc.new_page()
    prev: int | None = None
    for _ in range(levels):
        xref = doc.get_new_xref()
        if prev is None:
            body, res = b"0 0 1 1 re f", "<< >>"
        else:
            body, res = b" ".join([b"/F Do"] * fanout), f"<< /XObject << /F {prev} 0 R >> >>"
        doc.update_object(
            xref, f"<< /Type /XObject /Subtype /Form /BBox [0 0 600 800] /Resources {res} >>"
        )
        doc.update_stream(xref, body)
        prev = xref
    contents = doc.get_new_xref()
    doc.update_object(contents, "<<>>")
    doc.update_stream(contents, b"/F Do")
    doc.xref_set_key(page.xref, "Contents", f"{contents} 0 R")
    doc.xref_set_key(page.xref, "Resources", f"<< /XObject << /F {prev} 0 R >> >>")
    return doc.tobytes()
