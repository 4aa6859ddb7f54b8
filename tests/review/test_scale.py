"""The answers list over 100,000 answers: filtering, sorting and paging happen in DuckDB SQL
(LIMIT/OFFSET), so every page is right and holds one page of rows. How fast a page loads is
measured by bench/review_page.py (no timing assertions here)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pytest
from review_fixtures import build_many
from starlette.testclient import TestClient

from egr.review.app import create_app
from egr.review.data import PAGE_SIZE, Filters, ReviewData
from egr_pipeline.store import Store

N = 100_000


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReviewData, list[dict]]]:
    root = str(tmp_path_factory.mktemp("many") / "out")
    rows = build_many(root, N)
    data = ReviewData(Store(root), reviewer="ada", egr_version="test")
    try:
        yield data, rows
    finally:
        data.close()


def order_key(r: dict) -> tuple:
    e = r["entropy_after"]
    return (e is None, -(e or 0.0))


def test_pages_of_100k_answers_are_least_confident_first(many) -> None:
    data, rows = many
    assert len(rows) == N
    want = sorted(rows, key=order_key)
    first = data.answers(Filters())
    assert first.total == N and len(first.rows) == PAGE_SIZE
    assert [r["entropy_after"] for r in first.rows] == [
        r["entropy_after"] for r in want[:PAGE_SIZE]
    ]
    mid = data.answers(Filters(page=1000))
    assert mid.offset == 999 * PAGE_SIZE
    got = [r["entropy_after"] for r in mid.rows]
    assert got == [r["entropy_after"] for r in want[mid.offset : mid.offset + PAGE_SIZE]]
    last = data.answers(Filters(page=10**6))  # past the end: the last page
    assert last.filters.page == math.ceil(N / PAGE_SIZE)
    assert len(last.rows) == N - (last.filters.page - 1) * PAGE_SIZE
    assert all(r["entropy_after"] is None for r in last.rows)  # failed items sort last


def test_filters_over_100k_answers(many) -> None:
    data, rows = many
    f = Filters(question="q007", status="ok", min_entropy=1.0, max_entropy=2.0)
    page = data.answers(f)
    want = [
        r
        for r in rows
        if r["question_id"] == "q007" and r["status"] == "ok" and 1.0 <= r["entropy_after"] <= 2.0
    ]
    assert page.total == len(want) > 0
    assert {r["work_key"] for r in page.rows} <= {r["work_key"] for r in want}
    doc = rows[12345]["doc_id"]
    by_doc = data.answers(Filters(doc="doc-00246"))
    assert by_doc.total == sum(r["doc_id"] == rows[246 * 50]["doc_id"] for r in rows)
    assert data.answers(Filters(doc=doc[:20])).total == sum(r["doc_id"] == doc for r in rows)


def test_the_list_page_renders_one_page_of_100k(many) -> None:
    data, _ = many
    with TestClient(create_app(data)) as c:
        page = c.get("/answers", params={"page": "3"}).text
    assert f'<b id="total">{N}</b>' in page
    assert len(re.findall(r'<tr class="row"', page)) == PAGE_SIZE
    assert f"page 3 of {math.ceil(N / PAGE_SIZE)}" in page
