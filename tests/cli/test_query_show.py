"""``egr query`` and ``egr show`` end to end: output formats, the picture, and bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from store_fixtures import PAGE_H, PAGE_W, Fixture, build, grounded, make_pdf
from typer.testing import CliRunner

from egr.cli import app
from egr.show import BOX_COLORS, box_color, load_show_data, page_image, render_show
from egr_core.types import Box
from egr_pipeline import duck, records
from egr_pipeline.answer_rows import answer_rows
from egr_pipeline.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    base = tmp_path_factory.mktemp("cli")
    (base / "pdfs").mkdir()
    return build(str(base / "out"), base / "pdfs")


def egr(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_query_inline_sql_as_json(fx: Fixture) -> None:
    code, out, _ = egr(
        "query",
        "--out",
        fx.root,
        "--format",
        "json",
        "SELECT question_id, answer FROM answers_latest ORDER BY question_id",
    )
    assert code == 0, out
    rows = json.loads(out)
    assert {r["question_id"] for r in rows} == {"q_total", "q_due", "q_sign"}


def test_query_sql_file_as_csv_with_a_variable(fx: Fixture) -> None:
    code, out, _ = egr(
        "query", "--out", fx.root, "low_confidence.sql", "--format", "csv", "--set", "threshold=0.1"
    )
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(float(r["entropy_after"]) > 0.1 for r in rows)
    assert rows[0]["threshold"] == "0.1"


def test_query_table_output_shows_bytes_compactly(fx: Fixture) -> None:
    code, out, _ = egr("query", "--out", fx.root, "SELECT rank, crop_png FROM evidence LIMIT 1")
    assert code == 0
    assert "bytes>" in out and "1 row(s)" in out


def test_show_writes_the_picture_with_boxes_where_the_table_says(tmp_path: Path) -> None:
    # A synthetic page with two evidence boxes at known places in PDF points.
    boxes_pt = [(72.0, 90.0, 300.0, 140.0), (330.0, 500.0, 560.0, 620.0)]
    boxes = [Box(x0 / PAGE_W, y0 / PAGE_H, x1 / PAGE_W, y1 / PAGE_H) for x0, y0, x1, y1 in boxes_pt]
    pdf = make_pdf(tmp_path / "page.pdf", [("Total due: 99", boxes[0])])
    doc_id = __import__("hashlib").sha256(pdf).hexdigest()
    store = Store(str(tmp_path / "out"))
    ctx = records.RunContext("r1", "m", "c", "0.1.0")
    g = grounded("q1", "How much is due?", "99", boxes, magnitude=1.0)
    store.write_group(
        ctx,
        records.merge(
            {
                "documents": [
                    records.document_row(
                        ctx, records.DocInfo(doc_id, str(tmp_path / "page.pdf"), len(pdf), 1)
                    )
                ]
            },
            {"pages": [records.page_row(ctx, doc_id, 0, records.PageSize(PAGE_W, PAGE_H))]},
            answer_rows(ctx, doc_id, 0, records.PageSize(PAGE_W, PAGE_H), g),
        ),
    )
    png = tmp_path / "show.png"
    code, out, err = egr(
        "show", "--out", store.url, "--doc", "page.pdf", "--question", "q1", "--png", str(png)
    )
    assert code == 0, out + err
    picture = np.asarray(Image.open(png).convert("RGB"))  # (H, W, 3)

    # Where the page sits in the picture (same code path as the command).
    con = duck.connect(store)
    data = load_show_data(con, "page.pdf", "q1")
    image, note = page_image(data, store)
    assert note is None and image is not None
    again, layout = render_show(data, image)
    assert again.size == (picture.shape[1], picture.shape[0])

    evidence = con.execute("SELECT rank, x0_pt, y0_pt, x1_pt, y1_pt FROM evidence").fetchall()
    assert sorted(r[0] for r in evidence) == [1, 2]
    for rank, x0, y0, x1, y1 in evidence:
        # From the table's PDF points to picture pixels, independently of the render code.
        px0 = layout.page_x + round(x0 / PAGE_W * layout.page_w)
        py0 = layout.page_y + round(y0 / PAGE_H * layout.page_h)
        px1 = layout.page_x + round(x1 / PAGE_W * layout.page_w) - 1
        py1 = layout.page_y + round(y1 / PAGE_H * layout.page_h) - 1
        color = np.array(box_color(rank))
        xm, ym = (px0 + px1) // 2, (py0 + py1) // 2
        for x, y in [(px0, ym), (px0 + 1, ym), (px1, ym), (px1 - 1, ym), (xm, py1), (xm, py1 - 1)]:
            assert (picture[y, x] == color).all(), (rank, x, y, picture[y, x])
        # Just outside and in the middle: not the outline colour.
        for x, y in [(px0 - 3, ym), (px1 + 3, ym), (xm, ym)]:
            assert not (picture[y, x] == color).all(), (rank, x, y)
    # The heatmap tints the top-ranked box (its peak) and leaves far-away paper white.
    x0, y0, x1, y1 = layout.to_canvas(boxes[0])
    inside = picture[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8].reshape(-1, 3)
    assert (np.abs(inside.astype(int) - 255).sum(axis=1) > 60).mean() > 0.8
    far = picture[layout.page_y + layout.page_h - 20, layout.page_x + 20]
    assert (far > 240).all(), far
    assert len(BOX_COLORS) >= 3


def test_show_default_png_name(
    fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = egr("show", "--out", fx.root, "--doc", "invoice.pdf", "--question", "q_due")
    assert code == 0, out + err
    (png,) = tmp_path.glob("egr-show-*-q_due.png")
    assert Image.open(png).size[0] > 1000
    assert "Due date: 2026-03-31" in out


def test_show_draws_a_blank_page_when_the_pdf_is_gone(fx: Fixture, tmp_path: Path) -> None:
    code, out, err = egr(
        "show",
        "--out",
        fx.root,
        "--doc",
        "locked.pdf",
        "--question",
        "q_total",
        "--png",
        str(tmp_path / "x.png"),
    )
    assert code == 0, out + err  # a failed item still gets a picture (with its error text)
    assert (tmp_path / "x.png").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["query", "--out", "{missing}", "SELECT 1"], 2, "no such folder"),
        (["query", "--out", "{empty}", "SELECT 1"], 2, "no committed results"),
        (["query", "--out", "{root}", "{bad_sql}"], 2, "bad.sql"),
        (["query", "--out", "{root}", "SELEC 1"], 2, "Parser Error"),
        (["query", "--out", "{root}", "SELECT 1", "--format", "xml"], 2, "--format"),
        (
            ["show", "--out", "{root}", "--doc", "nope.pdf", "--question", "q_total"],
            2,
            "unknown document 'nope.pdf'",
        ),
        (
            ["show", "--out", "{root}", "--doc", "invoice.pdf", "--question", "q_zzz"],
            2,
            "unknown question 'q_zzz'",
        ),
        (
            [
                "show",
                "--out",
                "{root}",
                "--doc",
                "invoice.pdf",
                "--question",
                "q_total",
                "--run",
                "r_zzz",
            ],
            2,
            "unknown run 'r_zzz'",
        ),
        (
            [
                "show",
                "--out",
                "{root}",
                "--doc",
                "invoice.pdf",
                "--question",
                "q_total",
                "--round",
                "7",
            ],
            2,
            "round 7 has no relevance maps",
        ),
    ],
)
def test_bad_input_gets_a_clear_message_and_a_non_zero_exit(
    fx: Fixture, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    empty = Store(str(tmp_path / "empty"))
    empty.begin_run(records.RunContext("r0", "m", "c", "0.1.0"))
    bad_sql = tmp_path / "bad.sql"
    bad_sql.write_text("-- Purpose: nothing\nSELECT FROM WHERE;\n")
    subst = {
        "missing": str(tmp_path / "missing"),
        "empty": str(tmp_path / "empty"),
        "root": fx.root,
        "bad_sql": str(bad_sql),
    }
    got, out, err = egr(*(a.format(**subst) for a in args))
    assert got == code, out + err
    assert message in err, err
    assert "Traceback" not in out + err


def test_a_corrupt_part_is_reported_with_its_path(fx: Fixture, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(fx.root, root)
    part = next((root / "maps").glob("run_id=*/part-*.parquet"))
    part.write_bytes(b"PAR1garbage")
    code, out, err = egr("query", "--out", str(root), "SELECT count(*) FROM maps")
    assert code == 1, out
    assert str(part) in err and "corrupt Parquet part" in err


def test_show_reads_the_answer_steps_views(tmp_path: Path) -> None:
    """answers.reads reaches egr show: the views and their answers are loaded and painted."""
    import dataclasses

    box = Box(72 / PAGE_W, 90 / PAGE_H, 300 / PAGE_W, 140 / PAGE_H)
    pdf = make_pdf(tmp_path / "page.pdf", [("Total due: 99", box)])
    doc_id = __import__("hashlib").sha256(pdf).hexdigest()
    store = Store(str(tmp_path / "out"))
    ctx = records.RunContext("r1", "m", "c", "0.1.0")
    views = [
        {"scale": 1.0, "page": False, "answer": "98", "logprob": -4.5},
        {"scale": 0.9, "page": False, "answer": "99", "logprob": -1.25},
    ]
    g = grounded("q1", "How much is due?", "99", [box])
    g = dataclasses.replace(g, extra={**g.extra, "read_views": views})
    size = records.PageSize(PAGE_W, PAGE_H)
    info = records.DocInfo(doc_id, str(tmp_path / "page.pdf"), len(pdf), 1)
    store.write_group(
        ctx,
        records.merge(
            {"documents": [records.document_row(ctx, info)]},
            {"pages": [records.page_row(ctx, doc_id, 0, size)]},
            answer_rows(ctx, doc_id, 0, size, g),
        ),
    )
    data = load_show_data(duck.connect(store), "page.pdf", "q1")
    assert data.reads == ((1.0, False, "98", -4.5), (0.9, False, "99", -1.25))
    image, _ = page_image(data, store)
    with_reads = np.asarray(render_show(data, image)[0].convert("RGB"))
    without = np.asarray(render_show(dataclasses.replace(data, reads=()), image)[0].convert("RGB"))
    assert with_reads.shape != without.shape or (with_reads != without).any()
    png = tmp_path / "show.png"
    code, out, err = egr(
        "show", "--out", store.url, "--doc", "page.pdf", "--question", "q1", "--png", str(png)
    )
    assert code == 0 and png.is_file(), out + err
