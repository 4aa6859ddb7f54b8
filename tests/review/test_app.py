"""The review web application over HTTP (Starlette's test client): pages, filters, pictures
drawn by egr show's code, verdicts, and ids-only input."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from review_fixtures import ReviewFx, query
from starlette.testclient import TestClient

from egr.review.app import PAGE_HEIGHT, create_app
from egr.review.data import ReviewData
from egr.show import box_color, draw_page, load_answer_data, page_image
from egr_pipeline import duck
from egr_pipeline.store import Store


@pytest.fixture
def client(review_data: ReviewData) -> Iterator[TestClient]:
    with TestClient(create_app(review_data)) as c:
        yield c


def latest(root: str) -> list[dict]:
    return query(
        root,
        "SELECT a.*, d.uri FROM answers_latest a LEFT JOIN documents d USING (run_id, doc_id)",
    )


def answer_links(page: str) -> list[str]:
    return list(
        dict.fromkeys(html.unescape(u) for u in re.findall(r'href="(/answer/[^"]+)"', page))
    )


def test_runs_page_shows_each_run_with_status_counts_and_the_diff(
    client: TestClient, review_fx: ReviewFx
) -> None:
    page = client.get("/").text
    fx = review_fx.fx
    for run in (fx.run_a.run_id, fx.run_b.run_id):
        assert run in page
    statuses = duck.run_query(
        Store(review_fx.root), "SELECT run_id, status, count(*) FROM answers GROUP BY ALL"
    ).rows
    for run, status, n in statuses:
        assert f'status={status}">{status} {n}</a>' in page.replace("&amp;", "&"), (run, status)
    diff = duck.run_query(Store(review_fx.root), "answers_diff.sql").rows
    assert f"{len(diff)} answer(s) changed" in page


def test_answers_are_least_confident_first_and_filtered(
    client: TestClient, review_fx: ReviewFx
) -> None:
    rows = latest(review_fx.root)
    page = client.get("/answers").text
    assert f'<b id="total">{len(rows)}</b>' in page
    # least confident first: the lowest log-likelihood per view, then answers read once (no
    # log-likelihood) by entropy, highest first; rows without either last
    cells = re.findall(r'<td class="num">([^<]*)</td>\s*<td class="num">([^<]*)</td>', page)
    shown = [(None if lp == "–" else float(lp), None if h == "–" else float(h)) for lp, h in cells]
    want = sorted(
        ((r["answer_logprob"], r["entropy_after"]) for r in rows),
        key=lambda p: (p[0] is None, p[0] or 0.0, p[1] is None, -(p[1] or 0.0)),
    )
    assert len(shown) == len(want) and any(lp is not None for lp, _ in want)
    for (lp, h), (wlp, wh) in zip(shown, want, strict=True):
        assert (lp is None, h is None) == (wlp is None, wh is None)
        assert (lp or 0.0, h or 0.0) == pytest.approx((wlp or 0.0, wh or 0.0), abs=0.005)

    ok = [r for r in rows if r["status"] == "ok"]
    page = client.get("/answers", params={"status": "ok"}).text
    assert f'<b id="total">{len(ok)}</b>' in page
    page = client.get("/answers", params={"doc": "locked"}).text
    assert f'<b id="total">{sum("locked" in r["uri"] for r in rows)}</b>' in page
    page = client.get("/answers", params={"min_entropy": "1.0"}).text
    n = sum(r["entropy_after"] is not None and r["entropy_after"] >= 1.0 for r in rows)
    assert f'<b id="total">{n}</b>' in page
    run_a = review_fx.fx.run_a.run_id
    page = client.get("/answers", params={"run": run_a, "question": "q_due"}).text
    assert '<b id="total">2</b>' in page  # run A asked q_due of both documents


def test_answer_view_shows_evidence_rounds_and_ground_truth(
    client: TestClient, review_fx: ReviewFx, review_data: ReviewData
) -> None:
    row = next(r for r in latest(review_fx.root) if r["question_id"] == "q_total" and r["answer"])
    url = f"/answer/{row['run_id']}/{row['work_key']}"
    page = client.get(url).text
    assert html.escape(row["question"]) in page and html.escape(row["answer"]) in page
    assert review_fx.expected[(row["doc_id"], "q_total")] in page  # the ground truth
    with review_data.cursor() as cur:
        data = load_answer_data(cur, row["run_id"], row["work_key"])
        maps = cur.execute(
            "SELECT DISTINCT round, spatial_entropy FROM maps WHERE run_id = ? AND work_key = ?",
            [row["run_id"], row["work_key"]],
        ).fetchall()
    for ev in data.evidence:
        assert html.escape(f"“{ev.text}”") in page
        crop = client.get(f"{url}/evidence/{ev.rank}.png")
        assert crop.content == ev.crop_png
    for rnd, se in maps:
        assert f"{se:.3f}" in page, rnd
    assert f"<b>{row['stop_reason']}</b>" in page
    crops = re.findall(r'src="(/answer/[^"]+/round/\d+/\d+\.png)"', page)
    assert crops and all(client.get(c).headers["content-type"] == "image/png" for c in crops)


def test_page_picture_is_egr_shows_drawing(
    client: TestClient, review_fx: ReviewFx, review_data: ReviewData
) -> None:
    row = next(r for r in latest(review_fx.root) if r["question_id"] == "q_total" and r["answer"])
    got = Image.open(
        io.BytesIO(client.get(f"/answer/{row['run_id']}/{row['work_key']}/page.png").content)
    )
    with review_data.cursor() as cur:
        data = load_answer_data(cur, row["run_id"], row["work_key"])
    image, _ = page_image(data, review_data.store, height_px=PAGE_HEIGHT)
    want = draw_page(data, image, height=PAGE_HEIGHT)
    assert got.size == want.size
    assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(want))
    # The rank-1 box is outlined in its colour at its place on the page.
    b = data.evidence[0].box
    x, y = round((b.x0 + b.x1) / 2 * got.width), round(b.y1 * got.height) - 2
    assert got.convert("RGB").getpixel((x, y)) == box_color(1)


def test_posting_a_verdict_writes_a_reviews_row(client: TestClient, review_fx: ReviewFx) -> None:
    row = next(r for r in latest(review_fx.root) if r["answer"])
    body = {"run_id": row["run_id"], "work_key": row["work_key"], "verdict": "wrong"}
    res = client.post("/api/review", json={**body, "submission": "k1"})
    assert res.status_code == 200 and res.json()["verdict"] == "wrong"
    assert client.post("/api/review", json={**body, "submission": "k1"}).status_code == 200
    got = duck.run_query(
        Store(review_fx.root), "SELECT run_id, work_key, verdict, reviewer FROM reviews"
    ).rows
    assert got == [(row["run_id"], row["work_key"], "wrong", "ada")]
    page = client.get("/answers", params={"verdict": "wrong"}).text
    assert '<b id="total">1</b>' in page


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "correct", "run_id": "../../etc", "work_key": "0" * 64},
        {"verdict": "correct", "run_id": "r1", "work_key": "not-a-key"},
        {"verdict": "perhaps"},
        {"verdict": "corrected"},
    ],
)
def test_bad_verdict_requests_are_refused(
    client: TestClient, review_fx: ReviewFx, body: dict
) -> None:
    row = next(r for r in latest(review_fx.root) if r["answer"])
    res = client.post(
        "/api/review", json={"run_id": row["run_id"], "work_key": row["work_key"], **body}
    )
    assert res.status_code == 400 and res.json()["error"]
    assert duck.run_query(Store(review_fx.root), "SELECT count(*) FROM reviews").rows == [(0,)]


def test_unknown_answer_is_404_and_paths_are_never_ids(
    client: TestClient, review_fx: ReviewFx
) -> None:
    assert (
        client.post(
            "/api/review", json={"run_id": "r1", "work_key": "0" * 64, "verdict": "correct"}
        ).status_code
        == 404
    )
    for url in (
        "/answer/x/" + "0" * 64,
        "/answer/..%2F..%2Fetc/passwd/page.png",
        "/answer/r/..%2F..%2Fetc%2Fpasswd",
        "/static/../data.py",
        "/static/..%2Fdata.py",
    ):
        res = client.get(url)
        assert res.status_code == 404, url
        assert "import" not in res.text


def test_cross_site_requests_are_refused(review_data: ReviewData, review_fx: ReviewFx) -> None:
    row = next(r for r in latest(review_fx.root) if r["answer"])
    body = {"run_id": row["run_id"], "work_key": row["work_key"], "verdict": "correct"}
    app = create_app(review_data, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        # A form post from another site (a "simple" request, no CORS preflight).
        res = c.post(
            "/api/review", content=json.dumps(body), headers={"content-type": "text/plain"}
        )
        assert res.status_code == 415
        res = c.post("/api/review", json=body, headers={"origin": "http://evil.example"})
        assert res.status_code == 403
        # DNS rebinding: a name other than loopback in the Host header.
        assert c.get("/answers", headers={"host": "evil.example:8765"}).status_code == 400
        assert c.get("/answers").status_code == 200
        assert query(review_fx.root, "SELECT count(*) AS n FROM reviews")[0]["n"] == 0
        ok = c.post("/api/review", json=body, headers={"origin": "http://127.0.0.1:8765"})
        assert ok.status_code == 200


def test_answer_view_lists_the_answer_steps_views(review_fx: ReviewFx) -> None:
    """An answer read again at two scales (answers.reads): the page lists each view's answer and
    log-likelihood, and marks the kept one."""
    import dataclasses

    from store_fixtures import PAGE_H, PAGE_W, grounded

    from egr_core.types import Box
    from egr_pipeline import records
    from egr_pipeline.answer_rows import answer_rows

    store = Store(review_fx.root)
    ctx = records.RunContext("r-reads", "m", "c", "0.1.0")
    doc_id = "e" * 64
    views = [
        {"scale": 1.0, "page": False, "answer": "INV-23347", "logprob": -4.53},
        {"scale": 0.9, "page": False, "answer": "INV-23447", "logprob": -1.2},
    ]
    g = grounded("q_total", "What is the total?", "INV-23447", [Box(0.1, 0.1, 0.3, 0.2)])
    g = dataclasses.replace(g, extra={**g.extra, "read_views": views})
    size = records.PageSize(PAGE_W, PAGE_H)
    rows = records.merge(
        {"documents": [records.document_row(ctx, records.DocInfo(doc_id, "x.pdf", 10, 1))]},
        {"pages": [records.page_row(ctx, doc_id, 0, size)]},
        answer_rows(ctx, doc_id, 0, size, g),
    )
    assert store.write_group(ctx, rows) is not None
    data = ReviewData(Store(review_fx.root), reviewer="ada", egr_version="test")
    with TestClient(create_app(data)) as c:
        key = rows["answers"][0]["work_key"]
        page = c.get(f"/answer/r-reads/{key}").text
    table = page[page.index('id="reads"') :]
    table = table[: table.index("</table>")]
    tds = re.findall(r"<td[^>]*>(.*?)</td>", table, flags=re.S)
    cells = [html.unescape(re.sub(r"<[^>]+>", "", td)).strip() for td in tds]
    assert cells[1] == "INV-23347" and cells[2] == "-4.53"
    assert cells[4] == "INV-23447 kept" and cells[5] == "-1.20"
    assert re.search(r'id="answer-logprob">-0\.60<', page)  # -1.2 over two views
    assert "crops alone" in cells[0] and cells[3].startswith("0.9×")
