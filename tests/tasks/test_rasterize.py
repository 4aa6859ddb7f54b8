"""The rasterize step: sandboxed rendering with a reused worker pool; failures become statuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pymupdf
import pytest
from pdf_bombs import hang_pdf

from egr_core.documents import PageGeometry
from egr_core.types import Box, Question
from egr_pipeline.answering import doc_info
from egr_pipeline.plan import DocItem
from egr_pipeline.rasterize import from_result, open_view, rasterize
from egr_pipeline.sandbox import DocumentResult, PageResult, RenderJob, WorkerPool

Q = (Question("q1", "What is the total?"),)


def text_pdf(n_pages: int) -> bytes:
    doc = pymupdf.open()
    for i in range(n_pages):
        doc.new_page(width=300, height=400).insert_text((40, 60), f"page {i} total 42")
    return doc.tobytes()


def item(folder: Path, name: str, data: bytes) -> DocItem:
    path = folder / name
    path.write_bytes(data)
    return DocItem(str(path), hashlib.sha256(data).hexdigest(), len(data), Q)


def test_pool_reused_hang_times_out_naming_page_and_later_documents_still_render(
    tmp_path: Path,
) -> None:
    src, ws = tmp_path / "src", tmp_path / "ws"
    src.mkdir()
    docs = [
        item(src, "long.pdf", text_pdf(4)),
        item(src, "hang.pdf", hang_pdf()),
        item(src, "broken.pdf", b"%PDF-1.7\nnot really a PDF\n"),
        item(src, "short.pdf", text_pdf(1)),
    ]
    with WorkerPool(size=1, memory_mb=1024) as pool:
        long, hang, broken, short = (
            rasterize(d, str(ws), max_pages=2, max_side=256, max_pixels=65_536, timeout_s=3,
                      pool=pool)
            for d in docs
        )  # fmt: skip
        # One worker served long.pdf, then hang.pdf killed it; one more served the other two.
        assert pool.spawned == 2

    assert (long.status, long.n_pages, len(long.pages), long.truncated) == ("ok", 4, 2, True)
    info = doc_info(long)
    assert (info.status, info.error) == ("ok", None)
    assert (info.n_pages, info.n_pages_processed, info.truncated) == (4, 2, True)
    p1 = long.pages[1]
    assert max(p1.width_px, p1.height_px) <= 256 and long.budget == (256, 65_536)
    assert long.pages[0].width_pt == pytest.approx(300) and long.pages[0].height_pt == 400

    assert hang.status == "timeout" and not hang.usable and hang.pages == ()
    assert (hang.error or "").startswith(f"{docs[1].uri}, page 0: render timeout")
    assert "3 s" in hang.error
    assert broken.status == "corrupt" and "broken.pdf" in (broken.error or "")
    assert short.ok and short.usable and not short.truncated and len(short.pages) == 1

    # The answer step reopens only vetted documents in-process: the page image is the sandbox's
    # render (its size, its pixels), crops come from the vector PDF.
    with WorkerPool(size=1, memory_mb=1024) as pool:
        sandboxed = pool.run(RenderJob(long.pdf_path, pages=(1,), max_side=256,
                                       max_pixels=65_536, image_format="raw"))  # fmt: skip
    with open_view(long) as view:
        image = view.image(1)
        assert image.size == (p1.width_px, p1.height_px)
        assert image.tobytes() == sandboxed.pages[0].data, "the same pixels as the sandbox's"
        crop = view.crop_fn(1)(Box(0.0, 0.0, 0.5, 0.25), 200)
        assert max(crop.size) == 200 and "total 42" in view.text_fn(1)(Box(0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"hang\.pdf: not rendered by the sandbox"):
        open_view(hang).__enter__()


def test_partial_document_keeps_good_pages_and_names_the_failed_one(tmp_path: Path) -> None:
    geo = PageGeometry(0, 300.0, 400.0, 0, (0, 0, 300, 400), (0, 0, 300, 400))
    good = PageResult(0, "ok", geometry=geo, dpi=72.0, width_px=30, height_px=40)
    bad = PageResult(1, "out_of_memory", "x.pdf, page 1: out of memory")
    doc = DocItem("x.pdf", "d" * 64, 10, Q)
    res = DocumentResult("x.pdf", "x.pdf", "partial", bad.error, n_pages=3, pages=(good, bad))
    out = from_result(doc, tmp_path / "x.pdf", res, 2, (40, 1200))
    assert out.status == "partial" and out.usable and [p.index for p in out.pages] == [0]
    assert out.error == "1 of 2 pages failed; first: x.pdf, page 1: out of memory"
    assert out.truncated and (out.pages[0].width_px, out.pages[0].height_px) == (30, 40)
    assert out.budget == (40, 1200)

    only_bad = DocumentResult("x.pdf", "x.pdf", "partial", bad.error, n_pages=2, pages=(bad,))
    out = from_result(doc, tmp_path / "x.pdf", only_bad, 2, (40, 1200))
    assert out.status == "out_of_memory" and not out.usable and not out.truncated
