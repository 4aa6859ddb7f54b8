"""Every real-world and malformed PDF of ../shared/corpus yields pages or a typed error.

Each file is opened and its first page rendered in a sandboxed worker (memory limit, timeout).
Expectations come from the corpus's manifest.json where it states them. Skips cleanly where
../shared is absent (a fresh clone); the PDFs are never copied into the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from egr_pipeline.sandbox import DocumentResult, RenderJob, run_jobs

pytestmark = pytest.mark.corpus

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MEMORY_MB = 1536
TIMEOUT_S = 60.0
BUDGET = {"max_pixels": 1_000_000, "max_side": 1600}
TYPED = {"ok", "partial", "encrypted", "corrupt", "empty", "too_large", "render_failed"}
ERROR_STATUSES = {"corrupt", "empty", "render_failed", "partial"}


def _password_jobs(entry: dict[str, Any]) -> list[tuple[str, RenderJob]]:
    """Jobs for an encrypted file's known passwords (user and owner), as the manifest gives them."""
    pws = entry.get("passwords") or {}
    out = []
    for role in ("user_unnormalised", "user", "owner"):
        pw = pws.get(role)
        if not isinstance(pw, str) or pw.startswith("("):  # "(empty: opens without password)"
            continue
        if role == "user" and "user_unnormalised" in pws:
            continue
        path = str(CORPUS / entry["file"])
        out.append((role, RenderJob(path, password=pw, first_pages=1, **BUDGET)))
    return out


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, Any]]:
    if not (CORPUS / "manifest.json").is_file():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    data = json.loads((CORPUS / "manifest.json").read_text())
    return {e["file"]: e for e in data["files"]}


@pytest.fixture(scope="module")
def results(
    manifest: dict[str, dict[str, Any]],
) -> tuple[dict[str, DocumentResult], dict[tuple[str, str], DocumentResult]]:
    plain = [
        RenderJob(str(CORPUS / f), first_pages=1, image_format="none", **BUDGET) for f in manifest
    ]
    keyed = [(f, role, job) for f, e in manifest.items() for role, job in _password_jobs(e)]
    done = run_jobs(
        plain + [j for _, _, j in keyed], workers=2, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB
    )
    by_file = dict(zip(manifest, done[: len(plain)], strict=True))
    by_pw = {(f, role): r for (f, role, _), r in zip(keyed, done[len(plain) :], strict=True)}
    return by_file, by_pw


def test_manifest_matches_folder(manifest: dict[str, dict[str, Any]]) -> None:
    on_disk = {f"pdfs/{p.name}" for p in (CORPUS / "pdfs").glob("*.pdf")}
    assert on_disk == set(manifest)


def test_every_file_yields_pages_or_a_typed_error(results: Any) -> None:
    by_file, _ = results
    for f, r in by_file.items():
        assert r.status in TYPED, f"{f}: {r.status}: {r.error}"  # no crash, no timeout
        assert r.elapsed_s < TIMEOUT_S
        assert r.max_rss_mb is not None and r.max_rss_mb < MEMORY_MB + 500, f"{f}: {r.max_rss_mb}"
        if r.status == "ok":
            assert r.pages and all(p.geometry is not None and p.width_px > 0 for p in r.pages)
            assert all(p.width_px * p.height_px <= BUDGET["max_pixels"] for p in r.pages)
        else:
            assert r.error and Path(f).name in r.error, f"{f}: error must name the file"


def test_statuses_agree_with_the_manifest(manifest: Any, results: Any) -> None:
    by_file, _ = results
    for f, entry in manifest.items():
        probe, r = entry["pymupdf_probe"], by_file[f]
        opened = str(probe.get("open", "")).startswith("ok")
        if probe.get("needs_pass"):
            assert r.status == "encrypted", f"{f}: {r.status} {r.error}"
        elif opened and not probe.get("page_count"):
            # "Opens" with 0 pages after a silent repair: that is a failure, not an empty success.
            assert r.status == "empty", f"{f}: {r.status} {r.error}"
        elif opened:
            assert r.status == "ok", f"{f}: {r.status} {r.error}"
            assert r.n_pages == probe["page_count"], f
        else:  # the probe hit an error loading its pages: typed failure or pages we could use
            assert r.status in ERROR_STATUSES | {"ok"}, f"{f}: {r.status} {r.error}"


def test_page_geometry_agrees_with_the_manifest(manifest: Any, results: Any) -> None:
    by_file, _ = results
    checked = 0
    for f, entry in manifest.items():
        probe, r = entry["pymupdf_probe"], by_file[f]
        if r.status != "ok" or "page0_size_pt" not in probe:
            continue
        g = r.pages[0].geometry
        assert (g.width_pt, g.height_pt) == pytest.approx(probe["page0_size_pt"], abs=0.06), f
        assert g.rotation in probe.get("rotations", [g.rotation]), f
        w, h = r.pages[0].width_px, r.pages[0].height_px
        assert w / h == pytest.approx(g.width_pt / g.height_pt, rel=0.02, abs=2 / min(w, h)), f
        checked += 1
    assert checked >= 40


def test_known_passwords_open_encrypted_files(results: Any) -> None:
    _, by_pw = results
    assert len(by_pw) >= 4
    for (f, role), r in by_pw.items():
        assert r.status == "ok", f"{f} with the {role} password: {r.status} {r.error}"
        assert r.pages and r.pages[0].status == "ok"


def test_text_and_clip_on_a_real_paper(manifest: Any) -> None:
    """In-process (a trusted file): words from the text layer come back from their own box."""
    from egr_core.documents import open_pdf

    with open_pdf(CORPUS / "pdfs" / "pdfjs__tracemonkey.pdf") as doc:
        g = doc.page_geometry(0)
        words = [w for w in doc.words(0) if len(w.text) > 6 and w.text.isalpha()][:5]
        assert words
        for w in words:
            box = g.points_to_box(*w.rect_pt)
            assert w.text in doc.text_in_box(0, box).split()
            img = doc.render_clip(0, box, long_side_px=256)
            assert max(img.size) == 256
            assert min(img.getextrema()[0]) < 128  # glyphs are there


def test_rotated_real_pages(manifest: Any) -> None:
    from egr_core.documents import open_pdf

    rotations = manifest["pdfs/pdfjs__rotation.pdf"]["pymupdf_probe"]["rotations"]
    with open_pdf(CORPUS / "pdfs" / "pdfjs__rotation.pdf") as doc:
        seen = {doc.page_geometry(i).rotation for i in range(doc.n_pages)}
        assert seen == set(rotations)
        for i in range(doc.n_pages):
            g = doc.page_geometry(i)
            rp = doc.render_page(i, max_pixels=200_000, max_side=800)
            assert (rp.width_px > rp.height_px) == (g.width_pt > g.height_pt)
