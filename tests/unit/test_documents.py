"""egr_core.documents on synthetic PDFs built in memory (no corpus needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pymupdf
import pytest

from egr_core import passwords
from egr_core.documents import DocLimits, PageGeometry, open_pdf
from egr_core.errors import (
    CorruptDocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    TooLargeError,
)
from egr_core.types import Box

MEDIABOX = (50.0, 100.0, 600.0, 800.0)
CROPBOX = (100.0, 200.0, 500.0, 700.0)  # origin far from (0, 0)
RECT_PDF = (150.0, 300.0, 250.0, 340.0)  # a filled rectangle, PDF user space (y up)


def _fmt(box: tuple[float, ...]) -> str:
    return "[" + " ".join(f"{v:g}" for v in box) + "]"


def boxed_pdf(rotations: tuple[int, ...] = (0, 90, 180, 270)) -> bytes:
    """One page per rotation; each has the same MediaBox/CropBox and a black rectangle drawn
    with a raw content stream at RECT_PDF in PDF user space."""
    doc = pymupdf.open()
    x0, y0, x1, y1 = RECT_PDF
    for rot in rotations:
        page = doc.new_page(width=600, height=800)
        xref = doc.get_new_xref()
        doc.update_object(xref, "<<>>")
        doc.update_stream(xref, f"0 0 0 rg {x0:g} {y0:g} {x1 - x0:g} {y1 - y0:g} re f".encode())
        doc.xref_set_key(page.xref, "Contents", f"{xref} 0 R")
        doc.xref_set_key(page.xref, "MediaBox", _fmt(MEDIABOX))
        doc.xref_set_key(page.xref, "CropBox", _fmt(CROPBOX))
        doc.xref_set_key(page.xref, "Rotate", str(rot))
    return doc.tobytes()


def raw_pdf(objects: list[str]) -> bytes:
    """A minimal PDF from object bodies (object i+1 = objects[i]); catalog is object 1."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def text_pdf(lines: list[tuple[float, float, str]], rotate: int = 0) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=300)
    for x, y, text in lines:
        page.insert_text((x, y), text, fontsize=12)
    if rotate:
        page.set_rotation(rotate)
    return doc.tobytes()


def dark_bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel-edge bbox (x0, y0, x1, y1) of pixels darker than mid-grey, (H, W, 3) input."""
    ys, xs = np.nonzero(img[..., 0] < 128)
    assert len(xs), "no dark pixels"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def rect_in_points(geom: PageGeometry) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = RECT_PDF
    (ax, ay), (bx, by) = geom.pdf_to_points(x0, y0), geom.pdf_to_points(x1, y1)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


# ------------------------------------------------------------------------------ geometry --
@pytest.mark.parametrize("page_index,rot", [(0, 0), (1, 90), (2, 180), (3, 270)])
def test_geometry_of_rotated_pages_with_offset_cropbox(page_index: int, rot: int) -> None:
    with open_pdf(boxed_pdf()) as doc:
        g = doc.page_geometry(page_index)
    cw, ch = CROPBOX[2] - CROPBOX[0], CROPBOX[3] - CROPBOX[1]
    assert g.rotation == rot
    assert (g.width_pt, g.height_pt) == ((cw, ch) if rot in (0, 180) else (ch, cw))
    assert g.mediabox == MEDIABOX
    assert g.cropbox == CROPBOX
    # The CropBox corners land exactly on the displayed page's corners.
    corners = {
        g.pdf_to_points(x, y) for x in (CROPBOX[0], CROPBOX[2]) for y in (CROPBOX[1], CROPBOX[3])
    }
    assert corners == {(0, 0), (g.width_pt, 0), (0, g.height_pt), (g.width_pt, g.height_pt)}
    # The top-left of what is displayed is the CropBox corner the rotation brings there.
    top_left_pdf = {0: (100, 700), 90: (100, 200), 180: (500, 200), 270: (500, 700)}[rot]
    assert g.points_to_pdf(0.0, 0.0) == pytest.approx(top_left_pdf)
    for x, y in [(0.0, 0.0), (12.5, 300.25), (g.width_pt, g.height_pt)]:
        assert g.pdf_to_points(*g.points_to_pdf(x, y)) == pytest.approx((x, y))


def test_box_points_and_pixels_round_trip() -> None:
    with open_pdf(boxed_pdf((90,))) as doc:
        g = doc.page_geometry(0)
    box = Box(0.1, 0.25, 0.6, 0.9)
    pts = g.box_to_points(box)
    assert pts == pytest.approx((50.0, 100.0, 300.0, 360.0))  # 500 x 400 pt displayed
    back = g.points_to_box(*pts)
    assert back.as_tuple() == pytest.approx(box.as_tuple())
    for dpi in (72.0, 96.5, 300.0):
        px = g.pt_to_px(123.4, 56.7, dpi)
        assert px == pytest.approx((123.4 * dpi / 72, 56.7 * dpi / 72))
        assert g.px_to_pt(*px, dpi) == pytest.approx((123.4, 56.7))
    # Clamped to the page; a rectangle outside it is an error naming the page.
    assert g.points_to_box(-10, -10, 600, 500).as_tuple() == (0.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="page 0"):
        g.points_to_box(600, 0, 700, 10)


# ------------------------------------------------------------------- pixel round trips --
@pytest.mark.parametrize("page_index", [0, 1, 2, 3])
def test_rendered_rectangle_matches_transform_both_ways(page_index: int) -> None:
    with open_pdf(boxed_pdf()) as doc:
        rp = doc.render_page(page_index, max_pixels=333_333, max_side=900)
    g = rp.geometry
    assert rp.image.size == (rp.width_px, rp.height_px)
    assert rp.dpi != pytest.approx(72.0)  # a non-trivial scale
    found = dark_bbox(np.asarray(rp.image))
    # points -> pixels: the rectangle's transformed corners are where the dark pixels are.
    x0, y0, x1, y1 = rect_in_points(g)
    expect = (*rp.pt_to_px(x0, y0), *rp.pt_to_px(x1, y1))
    assert found == pytest.approx(expect, abs=1.0)
    # pixels -> points -> PDF user space: back to the rectangle drawn in the content stream.
    px0, py0 = rp.px_to_pt(found[0], found[1])
    px1, py1 = rp.px_to_pt(found[2], found[3])
    corners = [g.points_to_pdf(px0, py0), g.points_to_pdf(px1, py1)]
    xs, ys = sorted(c[0] for c in corners), sorted(c[1] for c in corners)
    tol = 72.0 / rp.dpi  # one pixel in points
    assert (xs[0], ys[0], xs[1], ys[1]) == pytest.approx(RECT_PDF, abs=tol)


def test_render_page_uses_the_highest_dpi_within_budget() -> None:
    with open_pdf(boxed_pdf((0, 90))) as doc:
        for max_pixels, max_side in [(100_000, 10_000), (10_000_000, 777), (250_000, 600)]:
            rp = doc.render_page(1, max_pixels=max_pixels, max_side=max_side)
            w, h = rp.width_px, rp.height_px
            assert w * h <= max_pixels and max(w, h) <= max_side
            assert (w, h) == (round(500 * rp.dpi / 72), round(400 * rp.dpi / 72))
            # 1% more resolution would break the budget: this is the highest DPI that fits.
            w2, h2 = round(500 * rp.dpi * 1.01 / 72), round(400 * rp.dpi * 1.01 / 72)
            assert w2 * h2 > max_pixels or max(w2, h2) > max_side
        capped = doc.render_page(0, max_pixels=10**7, max_side=5000, max_dpi=36)
        assert capped.dpi == pytest.approx(36.0)


def test_huge_page_is_rendered_within_the_pixel_budget() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=200, height=200)
    doc.xref_set_key(page.xref, "MediaBox", "[0 0 14400 9000]")  # 200 x 125 inches
    page.draw_rect(pymupdf.Rect(0, 0, 7200, 4500), color=(0, 0, 0), fill=(0, 0, 0))
    with open_pdf(doc.tobytes()) as pdf:
        rp = pdf.render_page(0, max_pixels=1_000_000, max_side=2000)
        assert rp.width_px * rp.height_px <= 1_000_000
        assert rp.dpi == pytest.approx(72 * (1_000_000 / (14400 * 9000)) ** 0.5, rel=1e-3)
        # The top-left quarter is black, measured through the transform.
        x1, y1 = rp.pt_to_px(7200, 4500)
        assert dark_bbox(np.asarray(rp.image)) == pytest.approx((0, 0, x1, y1), abs=1)


def test_pixel_limit_is_checked_before_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered despite the limit")

    limits = DocLimits(max_render_pixels=50_000)
    with open_pdf(boxed_pdf((0,)), name="tiny.pdf", limits=limits) as doc:
        monkeypatch.setattr(doc, "_raster", boom)
        with pytest.raises(TooLargeError, match=r"tiny\.pdf, page 0: .*pixels") as err:
            doc.render_page(0, max_pixels=1_000_000, max_side=4000)
        assert err.value.page == 0
        with pytest.raises(TooLargeError, match="50000 pixels"):
            doc.render_clip(0, Box(0, 0, 1, 1), long_side_px=1000)


# --------------------------------------------------------------------------- clip zoom --
@pytest.mark.parametrize("page_index", [0, 1, 3])
def test_render_clip_reaches_requested_size_exactly(page_index: int) -> None:
    with open_pdf(boxed_pdf()) as doc:
        g = doc.page_geometry(page_index)
        x0, y0, x1, y1 = rect_in_points(g)
        exact = g.points_to_box(x0, y0, x1, y1)
        img = doc.render_clip(page_index, exact, long_side_px=300)
        assert max(img.size) == 300
        arr = np.asarray(img)
        assert arr.max() < 10  # the crop is exactly the rectangle: every pixel is black

        # A box twice the rectangle's size with the rectangle in its middle half.
        w, h = x1 - x0, y1 - y0
        box = g.points_to_box(x0 - w / 2, y0 - h / 2, x1 + w / 2, y1 + h / 2)
        img = doc.render_clip(page_index, box, long_side_px=601)
        W, H = img.size
        assert max(W, H) == 601
        assert min(W, H) == round(601 * min(w, h) / max(w, h))
        middle = (W / 4, H / 4, 3 * W / 4, 3 * H / 4)
        assert dark_bbox(np.asarray(img)) == pytest.approx(middle, abs=1)


def test_render_clip_is_a_lossless_zoom_of_the_page_render() -> None:
    """The same box cut from a high-DPI page render equals the clip render."""
    with open_pdf(text_pdf([(40, 60, "Lossless zoom check"), (40, 90, "second line here")])) as doc:
        rp = doc.render_page(0, max_pixels=4000 * 3000, max_side=4000, max_dpi=720)
        assert rp.dpi == pytest.approx(720)
        box = Box(0.1, 0.15, 0.5, 0.35)  # 160 x 60 pt -> 1600 x 600 px at 720 dpi
        clip = np.asarray(doc.render_clip(0, box, long_side_px=1600)).astype(int)
        x0, y0, x1, y1 = (round(v) for v in (40 * 10, 45 * 10, 200 * 10, 105 * 10))
        cut = np.asarray(rp.image)[y0:y1, x0:x1].astype(int)
        assert clip.shape == cut.shape
        assert np.abs(clip - cut).mean() < 1.0


# --------------------------------------------------------------------------------- text --
def test_text_in_box_reading_order_and_overlap_rule() -> None:
    # Inserted out of order: the second line first, words of a line right to left.
    lines = [(40, 100, "gamma"), (110, 100, "delta"), (100, 60, "beta"), (40, 60, "alpha")]
    lines += [(300, 250, "faraway")]
    with open_pdf(text_pdf(lines)) as doc:
        assert doc.text_in_box(0, Box(0, 0, 1, 1)) == "alpha beta gamma delta faraway"
        assert doc.text_in_box(0, Box(0.0, 0.0, 0.5, 0.5)) == "alpha beta gamma delta"
        # A word counts when the box covers more than the tolerance (1 pt) of it on both axes.
        words = {w.text: w for w in doc.words(0)}
        ax0, ay0, ax1, ay1 = words["alpha"].rect_pt
        g = doc.page_geometry(0)
        left_third = g.points_to_box(ax0 - 1, ay0 - 1, ax0 + (ax1 - ax0) / 3, ay1 + 1)
        assert doc.text_in_box(0, left_third) == "alpha"  # its centre is outside the box
        inner = g.points_to_box(ax0 + 3, ay0 + 3, ax1 - 3, ay1 - 3)
        assert doc.text_in_box(0, inner) == "alpha"  # the box inside the word
        graze = g.points_to_box(ax1 - 0.5, ay0, ax1 + 20, ay1)  # 0.5 pt of "alpha", no more
        assert doc.text_in_box(0, graze) == ""
        assert doc.text_in_box(0, graze, tol_pt=0.25) == "alpha"
        above = g.points_to_box(ax0, ay0 - 20, ax1, ay0 + 0.5)  # grazes its top by 0.5 pt
        assert doc.text_in_box(0, above) == ""
        assert doc.text_in_box(0, Box(0.9, 0.0, 1.0, 0.1)) == ""


@pytest.mark.parametrize("rot", [90, 180, 270])
def test_text_in_box_on_rotated_pages(rot: int) -> None:
    lines = [(40, 100, "gamma delta"), (40, 60, "alpha beta")]
    with open_pdf(text_pdf(lines, rotate=rot)) as doc:
        g = doc.page_geometry(0)
        assert (g.width_pt, g.height_pt) == ((300, 400) if rot != 180 else (400, 300))
        assert doc.text_in_box(0, Box(0, 0, 1, 1)) == "alpha beta gamma delta"
        # Word boxes are in the displayed frame: each lies on the rendered glyphs.
        rp = doc.render_page(0, max_pixels=600_000, max_side=2000)
        arr = np.asarray(rp.image)
        for w in doc.words(0):
            x0, y0 = rp.pt_to_px(*w.rect_pt[:2])
            x1, y1 = rp.pt_to_px(*w.rect_pt[2:])
            patch = arr[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
            assert (patch < 128).any(), f"no glyph pixels under {w.text!r} on a {rot} page"
        # The box around alpha/beta's displayed position returns just those words.
        words = {w.text: w.rect_pt for w in doc.words(0)}
        xs = [v for t in ("alpha", "beta") for v in (words[t][0], words[t][2])]
        ys = [v for t in ("alpha", "beta") for v in (words[t][1], words[t][3])]
        box = g.points_to_box(min(xs), min(ys), max(xs), max(ys))
        assert doc.text_in_box(0, box) == "alpha beta"


# ------------------------------------------------------------------------------- errors --
def test_doc_id_name_title_and_path_source(tmp_path: pytest.TempPathFactory) -> None:
    src = pymupdf.open()
    src.new_page()
    src.set_metadata({"title": "  A title  "})
    data = src.tobytes()
    path = tmp_path / "t.pdf"  # type: ignore[operator]
    path.write_bytes(data)
    with open_pdf(path) as a, open_pdf(data, name="mem.pdf") as b:
        assert a.doc_id == b.doc_id == hashlib.sha256(data).hexdigest()
        assert a.name == str(path) and b.name == "mem.pdf"
        assert a.title == "A title"
        assert a.n_pages == 1 and not a.is_repaired
        with pytest.raises(IndexError, match="page 5 out of range"):
            a.page_geometry(5)
    with pytest.raises(ValueError, match="read_source"):
        open_pdf("s3://bucket/key.pdf")


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"\x00\x01garbage" * 200, "no '%PDF-' header"),
        (b"%PDF-1.7\n" + b"\xff\xfe junk " * 50, "cannot open"),
    ],
)
def test_corrupt_inputs_raise_typed_errors(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptDocumentError, match=reason) as err:
        open_pdf(data, name="bad.pdf")
    assert str(err.value).startswith("bad.pdf: ")
    assert err.value.status == "corrupt"


def test_missing_file_is_unreadable(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(CorruptDocumentError, match="cannot read"):
        open_pdf(tmp_path / "nope.pdf")  # type: ignore[operator]


def test_zero_pages_is_empty_error() -> None:
    data = raw_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"])
    with pytest.raises(EmptyDocumentError, match=r"zero\.pdf: 0 pages"):
        open_pdf(data, name="zero.pdf")
    # A broken file that MuPDF "repairs" into zero pages is the same failure.
    broken = data.replace(b"startxref", b"startxrof")
    with pytest.raises(EmptyDocumentError, match="0 pages after MuPDF repaired"):
        open_pdf(broken, name="broken.pdf")


def test_encrypted_needs_the_password() -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret text")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="hôtel", owner_pw="owner-pw")
    with pytest.raises(EncryptedDocumentError, match=r"enc\.pdf: encrypted; a password is needed"):
        open_pdf(data, name="enc.pdf")
    with pytest.raises(EncryptedDocumentError, match="wrong"):
        open_pdf(data, name="enc.pdf", password="hotel")
    for pw in ("hôtel", "owner-pw"):
        with open_pdf(data, password=pw) as pdf:
            assert pdf.text_in_box(0, Box(0, 0, 1, 1)) == "secret text"


def test_saslprep_normalises_pdf2_passwords() -> None:
    assert passwords.saslprep("SªSL\u00adprep") == "SaSLprep"
    assert passwords.saslprep("a\u00a0b") == "a b"
    assert passwords.saslprep("plain") == "plain"


def test_byte_and_page_limits() -> None:
    data = boxed_pdf((0, 90, 180))
    with pytest.raises(TooLargeError, match=f"big.pdf: {len(data)} bytes exceeds"):
        open_pdf(data, name="big.pdf", limits=DocLimits(max_bytes=len(data) - 1))
    with pytest.raises(TooLargeError, match="3 pages exceeds the limit of 2"):
        open_pdf(data, limits=DocLimits(max_pages=2))
    with pytest.raises(ValueError, match="max_pages"):
        DocLimits(max_pages=0)


def test_page_that_fails_to_load_is_a_page_error() -> None:
    from egr_core.errors import PageRenderError

    data = raw_pdf(
        [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
            "<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>",  # a cycle
        ]
    )
    with open_pdf(data, name="cycle.pdf") as doc:
        assert doc.n_pages == 2
        assert doc.render_page(0, max_pixels=10_000, max_side=100).width_px == 100
        with pytest.raises(PageRenderError, match=r"cycle\.pdf, page 1: .*cycle") as err:
            doc.render_page(1, max_pixels=10_000, max_side=100)
        assert err.value.page == 1
