"""egr_pipeline.sources and egr_pipeline.sandbox on synthetic documents (spawned workers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

from egr_core.documents import open_pdf
from egr_core.errors import EncryptedDocumentError, TooLargeError, UnreadableSourceError
from egr_pipeline.sandbox import RenderJob, run_job, run_jobs
from egr_pipeline.sources import list_pdfs, read_source, source_name


def small_pdf(n_pages: int = 2, text: str = "hello sandbox") -> bytes:
    doc = pymupdf.open()
    for i in range(n_pages):
        page = doc.new_page(width=300, height=200 + 100 * i)
        page.insert_text((20, 40), f"{text} {i}")
        page.draw_rect(pymupdf.Rect(10, 60, 110, 90), color=(0, 0, 0), fill=(0, 0, 0))
    return doc.tobytes()


def encrypted_pdf(password: str) -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "locked")
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw="own")


# ------------------------------------------------------------------------------ sources --
def test_read_and_list_local(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    files = [tmp_path / "x.pdf", tmp_path / "a" / "Y.PDF", tmp_path / "a" / "b" / "z.pdf"]
    for f in files:
        f.write_bytes(small_pdf(1))
    (tmp_path / "a" / "notes.txt").write_text("not a pdf")
    assert list_pdfs(tmp_path) == sorted(str(f) for f in files)
    assert list_pdfs(tmp_path, recursive=False) == [str(files[0])]
    assert read_source(files[1]) == files[1].read_bytes()
    assert source_name(str(files[1])) == "Y.PDF"
    with pytest.raises(UnreadableSourceError, match=r"nope\.pdf: not found"):
        read_source(tmp_path / "nope.pdf")
    with pytest.raises(UnreadableSourceError, match="no such folder"):
        list_pdfs(tmp_path / "missing")
    with pytest.raises(TooLargeError, match="exceeds the limit of 10"):
        read_source(files[0], max_bytes=10)


def test_read_and_list_fsspec_memory_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/egr-test/in/one.pdf", b"%PDF-1 one")
    fs.pipe("/egr-test/in/sub/two.pdf", b"%PDF-1 two")
    fs.pipe("/egr-test/in/skip.txt", b"x")
    urls = list_pdfs("memory://egr-test/in")
    assert all(u.startswith("memory://") for u in urls)  # full URLs, ready for read_source
    assert [u.split("egr-test/", 1)[1] for u in urls] == ["in/one.pdf", "in/sub/two.pdf"]
    assert [read_source(u) for u in urls] == [b"%PDF-1 one", b"%PDF-1 two"]
    assert read_source("memory://egr-test/in/one.pdf", fs=fs) == b"%PDF-1 one"
    fs.rm("/egr-test", recursive=True)


def test_read_and_list_s3_through_moto() -> None:
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="docs")
        data = small_pdf(1)
        client.put_object(Bucket="docs", Key="in/a.pdf", Body=data)
        client.put_object(Bucket="docs", Key="in/deep/b.pdf", Body=data)
        client.put_object(Bucket="docs", Key="in/c.txt", Body=b"x")
        fs = s3fs.S3FileSystem(
            key="k",
            secret="s",
            client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        )
        urls = list_pdfs("s3://docs/in", fs=fs)
        assert urls == ["s3://docs/in/a.pdf", "s3://docs/in/deep/b.pdf"]
        got = read_source(urls[1], fs=fs)
        assert got == data
        with open_pdf(got, name=urls[1]) as doc:
            assert doc.n_pages == 1
        with pytest.raises(UnreadableSourceError, match=r"s3://docs/in/none\.pdf"):
            read_source("s3://docs/in/none.pdf", fs=fs)
    finally:
        server.stop()


# ------------------------------------------------------------------------------ sandbox --
def test_sandbox_statuses_for_good_and_bad_documents(tmp_path: Path) -> None:
    good = small_pdf(2)
    on_disk = tmp_path / "disk.pdf"
    on_disk.write_bytes(good)
    jobs = [
        RenderJob("good.pdf", data=good, max_pixels=200_000, max_side=1000),
        RenderJob(str(on_disk), image_format="raw", max_pixels=50_000, max_side=300),
        RenderJob("garbage.pdf", data=b"\x00garbage" * 100),
        RenderJob("locked.pdf", data=encrypted_pdf("pw")),
        RenderJob("locked-ok.pdf", data=encrypted_pdf("pw"), password="pw"),
        RenderJob(str(tmp_path / "missing.pdf")),
        RenderJob("pages.pdf", data=good, pages=(1, 5), image_format="none"),
    ]
    results = run_jobs(jobs, workers=2, timeout_s=60, memory_mb=1024)
    by = {r.name.rsplit("/", 1)[-1]: r for r in results}
    assert [r.name for r in results] == [j.label for j in jobs]

    r = by["good.pdf"]
    assert r.status == "ok" and r.error is None and r.n_pages == 2 and len(r.pages) == 2
    with open_pdf(good) as doc:
        assert r.doc_id == doc.doc_id
        for p in r.pages:
            assert p.geometry == doc.page_geometry(p.index)
            img = p.image()
            assert img.size == (p.width_px, p.height_px)
            assert p.width_px * p.height_px <= 200_000
            # Same pixels as an in-process render at the same budget.
            ref = doc.render_page(p.index, max_pixels=200_000, max_side=1000)
            assert np.array_equal(p.array(), np.asarray(ref.image))
    assert r.max_rss_mb is not None and 20 < r.max_rss_mb < 1024

    raw = by[on_disk.name]
    assert raw.status == "ok" and raw.pages[0].array().shape == (
        raw.pages[0].height_px,
        raw.pages[0].width_px,
        3,
    )
    assert by["garbage.pdf"].status == "corrupt"
    assert "garbage.pdf: not a PDF" in (by["garbage.pdf"].error or "")
    assert by["locked.pdf"].status == "encrypted"
    with pytest.raises(EncryptedDocumentError, match=r"locked\.pdf"):
        by["locked.pdf"].raise_for_status()
    assert by["locked-ok.pdf"].status == "ok"
    assert by["missing.pdf"].status == "unreadable"
    assert "missing.pdf: not found" in (by["missing.pdf"].error or "")
    part = by["pages.pdf"]
    assert part.status == "partial"
    assert [(p.index, p.status) for p in part.pages] == [(1, "ok"), (5, "render_failed")]
    assert part.pages[0].data is None and part.pages[0].geometry is not None
    assert "pages.pdf, page 5" in (part.error or "")


def test_sandbox_memory_limit_becomes_a_status() -> None:
    # A 6000 x 6000 RGB pixmap needs 108 MB; the worker may only add 64 MB.
    job = RenderJob("bomb.pdf", data=small_pdf(1), max_pixels=36_000_000, max_side=6000)
    r = run_job(job, timeout_s=60, memory_mb=64)
    assert r.status == "out_of_memory", r
    assert r.error is not None and "bomb.pdf, page 0" in r.error
    assert r.n_pages == 1


def heavy_pdf(n_rects: int = 200_000) -> bytes:
    """One page of many tiny filled rectangles: ~0.3 s to render at 4 MP."""
    doc = pymupdf.open()
    page = doc.new_page()
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    ops = b"".join(b"%d %d 3 3 re f " % (i % 600, (i // 600) % 790) for i in range(n_rects))
    doc.update_stream(xref, b"0 0 0 rg " + ops)
    doc.xref_set_key(page.xref, "Contents", f"{xref} 0 R")
    return doc.tobytes()


def test_sandbox_timeout_becomes_a_status_and_the_next_document_still_runs() -> None:
    slow = RenderJob(
        "slow.pdf", data=heavy_pdf(), max_pixels=4_000_000, max_side=4000, timeout_s=0.05
    )
    jobs = [
        RenderJob("before.pdf", data=small_pdf(1)),
        slow,
        RenderJob("after.pdf", data=small_pdf(1)),
    ]
    before, timed_out, after = run_jobs(jobs, workers=1, timeout_s=60)
    assert timed_out.status == "timeout"
    assert timed_out.error is not None
    assert timed_out.error.startswith("slow.pdf: no result after 0.05 s")
    assert timed_out.exitcode is not None and timed_out.exitcode < 0  # killed
    assert before.status == after.status == "ok"  # a fresh worker replaced the killed one
