"""Every sql/*.sql file against fixture Parquet written through the real writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_fixtures import BOXES, Fixture, build, text_under

from egr_pipeline import duck
from egr_pipeline.store import Store

SQL_FILES = sorted(p.name for p in duck.SQL_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    base = tmp_path_factory.mktemp("sql")
    (base / "pdfs").mkdir()
    return build(str(base / "out"), base / "pdfs")


def q(fx: Fixture, sql: str, **variables: str) -> list[dict]:
    res = duck.run_query(fx.store, sql, variables)
    return [dict(zip(res.columns, row, strict=True)) for row in res.rows]


def latest(fx: Fixture) -> dict[tuple[str, str], tuple[str, object]]:
    """(doc_id, qid) -> (run_id, answer or failure status), derived from what was written."""
    out: dict[tuple[str, str], tuple[str, object]] = {}
    for run in (fx.run_a.run_id, fx.run_b.run_id):  # run B was written last
        for (r, doc, qid), g in fx.answers.items():
            if r == run:
                out[(doc, qid)] = (run, g)
        for (r, doc, qid), status in fx.failed.items():
            if r == run:
                out[(doc, qid)] = (run, status)
    return out


def test_every_file_opens_with_purpose_inputs_and_output() -> None:
    assert {
        "00_views.sql",
        "answers_latest.sql",
        "low_confidence.sql",
        "doc_evidence.sql",
        "failures_by_status.sql",
        "answers_diff.sql",
        "runs_summary.sql",
    } <= set(SQL_FILES)
    for name in SQL_FILES:
        text = (duck.SQL_DIR / name).read_text()
        head = text.split("\n\n")[0] if name == "00_views.sql" else text.split("SELECT")[0]
        assert head.startswith("-- Purpose:"), name
        for word in ("Inputs:", "Output:"):
            assert word in head, (name, word)


def test_views_show_only_committed_groups(fx: Fixture, tmp_path: Path) -> None:
    n_items = len(fx.answers) + len(fx.failed)
    assert q(fx, "SELECT count(*) AS n FROM answers")[0]["n"] == n_items
    # A part without a commit marker (a crashed write) must stay invisible.
    part = next(Path(fx.root, "answers").glob("run_id=*/part-*.parquet"))
    orphan = pq.read_table(part).set_column(1, "group_id", pa.array(["orphan"] * 3))
    orphan_path = part.with_name("part-orphan.parquet")
    pq.write_table(orphan, orphan_path)
    try:
        assert q(fx, "SELECT count(*) AS n FROM answers")[0]["n"] == n_items
    finally:
        orphan_path.unlink()
    views = {r["view_name"] for r in q(fx, "SELECT view_name FROM duckdb_views()")}
    assert {"runs", "documents", "pages", "answers", "evidence", "maps", "answers_latest"} <= views
    # documents: one row per (run, doc) even though run B's doc rows came with its group.
    assert q(fx, "SELECT count(*) AS n FROM documents")[0]["n"] == 3


def test_answers_latest(fx: Fixture) -> None:
    rows = q(fx, "answers_latest.sql")
    want = latest(fx)
    assert {(r["doc_id"], r["question_id"]) for r in rows} == set(want)
    for r in rows:
        run, what = want[(r["doc_id"], r["question_id"])]
        assert r["run_id"] == run
        if isinstance(what, str):
            assert r["status"] == what and r["answer"] is None
        else:
            assert r["answer"] == what.answer and r["status"] == what.status.value
    only = q(fx, "answers_latest.sql", doc="invoice.pdf")
    assert {r["doc_id"] for r in only} == {fx.docs["invoice.pdf"]}
    assert q(fx, "answers_latest.sql", doc=fx.docs["locked.pdf"][:10])[0]["status"] == "encrypted"


@pytest.mark.parametrize(
    "variables", [{}, {"threshold": "0.1"}, {"threshold": "2.3"}, {"min_logprob": "-0.2"}]
)
def test_low_confidence(fx: Fixture, variables: dict[str, str]) -> None:
    """Flagged: entropy after grounding above ``threshold`` or log-likelihood per view below
    ``min_logprob``; the least likely first, answers read once (no log-likelihood) after them by
    entropy."""
    rows = q(fx, "low_confidence.sql", **variables)
    t = float(variables.get("threshold", 1.0))
    floor = float(variables.get("min_logprob", -1.5))
    answered = [g for _, g in latest(fx).values() if not isinstance(g, str)]
    flagged = [
        g
        for g in answered
        if g.entropy_after > t or (g.answer_logprob is not None and g.answer_logprob < floor)
    ]
    flagged.sort(key=lambda g: (g.answer_logprob is None, g.answer_logprob or 0, -g.entropy_after))
    got = [(r["question_id"], r["answer_logprob"], r["entropy_after"]) for r in rows]
    assert got == [(g.question_id, g.answer_logprob, g.entropy_after) for g in flagged]
    assert all(r["threshold"] == t and r["min_logprob"] == floor for r in rows)
    if not variables:  # the fixture's unlikely answer with a sure first token is caught
        assert any(r["entropy_after"] < t and r["answer_logprob"] < floor for r in rows)


def test_roots_written_before_a_column_existed_read_it_as_null(fx: Fixture, tmp_path: Path) -> None:
    """An answers part of schema 3 (no reads, no answer_logprob) beside newer ones, and alone:
    the views give it null columns and every query file still runs."""
    old = tmp_path / "old"
    shutil.copytree(fx.root, old)
    for part in (old / "answers").glob("run_id=*/part-*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["reads", "answer_logprob"]), part)
    store = Store(str(old))
    res = duck.run_query(store, "SELECT reads, answer_logprob FROM answers")
    assert res.rows and all(r == (None, None) for r in res.rows)
    for name in SQL_FILES:
        if name != duck.VIEWS_FILE:
            duck.run_query(store, name, {})
    rows = duck.run_query(store, "low_confidence.sql").rows  # the entropy alone flags
    answered = [g for _, g in latest(fx).values() if not isinstance(g, str)]
    assert len(rows) == sum(1 for g in answered if g.entropy_after > 1.0) > 0


def test_doc_evidence(fx: Fixture) -> None:
    rows = q(fx, "doc_evidence.sql", doc="invoice.pdf")
    want = [
        (qid, i + 1, b)
        for qid in sorted(BOXES)
        for i, b in enumerate(BOXES[qid])
        if qid in ("q_total", "q_due")
    ]  # q_sign failed in the latest run
    assert [(r["question_id"], r["rank"]) for r in rows] == [(w[0], w[1]) for w in want]
    for r, (_, _, box) in zip(rows, want, strict=True):
        assert (r["x0_n"], r["y0_n"], r["x1_n"], r["y1_n"]) == box.as_tuple()
        assert r["x1_pt"] == pytest.approx(box.x1 * 612.0)
        assert r["evidence_text"] == text_under(box)
        assert r["crop_bytes"] > 100
    assert q(fx, "doc_evidence.sql", doc="locked.pdf") == []


def test_failures_by_status(fx: Fixture) -> None:
    rows = q(fx, "failures_by_status.sql")
    got = {(r["run_id"], r["status"]): (r["n_items"], r["n_documents"]) for r in rows}
    want: dict[tuple[str, str], tuple[int, int]] = {}
    for (run, doc, _), status in fx.failed.items():
        n, docs = want.get((run, status), (0, set()))  # type: ignore[arg-type]
        want[(run, status)] = (n + 1, docs | {doc})  # type: ignore[operator]
    assert got == {k: (n, len(d)) for k, (n, d) in want.items()}  # type: ignore[arg-type]
    assert all(r["example_error"] for r in rows)
    only_b = q(fx, "failures_by_status.sql", run=fx.run_b.run_id)
    assert {r["run_id"] for r in only_b} == {fx.run_b.run_id}


def _outcome(fx: Fixture, run: str, doc: str, qid: str) -> tuple[str | None, str] | None:
    if (run, doc, qid) in fx.answers:
        g = fx.answers[(run, doc, qid)]
        return g.answer, g.status.value
    if (run, doc, qid) in fx.failed:
        return None, fx.failed[(run, doc, qid)]
    return None


def test_answers_diff_defaults_to_the_two_latest_runs(fx: Fixture) -> None:
    want = {}
    for doc in fx.docs.values():
        for qid in BOXES:
            a = _outcome(fx, fx.run_a.run_id, doc, qid)
            b = _outcome(fx, fx.run_b.run_id, doc, qid)
            if a is None or b is None:
                continue
            ans, st = (a[0] or "").strip() != (b[0] or "").strip(), a[1] != b[1]
            if ans or st:
                want[(doc, qid)] = "both" if ans and st else "answer" if ans else "status"
    assert want  # the fixture does change answers
    rows = q(fx, "answers_diff.sql")
    assert {(r["doc_id"], r["question_id"]): r["change"] for r in rows} == want
    assert {(r["run_a"], r["run_b"]) for r in rows} == {(fx.run_a.run_id, fx.run_b.run_id)}
    swapped = q(fx, "answers_diff.sql", run_a=fx.run_b.run_id, run_b=fx.run_a.run_id)
    assert {(r["doc_id"], r["question_id"]) for r in swapped} == set(want)
    assert q(fx, "answers_diff.sql", run_a=fx.run_a.run_id, run_b=fx.run_a.run_id) == []


def test_runs_summary(fx: Fixture) -> None:
    rows = q(fx, "runs_summary.sql")
    assert [r["run_id"] for r in rows] == [fx.run_a.run_id, fx.run_b.run_id]
    for r in rows:
        run = r["run_id"]
        ok = [g for (rr, _, _), g in fx.answers.items() if rr == run and g.status.value == "ok"]
        failed = [s for (rr, _, _), s in fx.failed.items() if rr == run]
        items = [k for k in [*fx.answers, *fx.failed] if k[0] == run]
        assert (r["n_items"], r["n_ok"], r["n_failed"]) == (len(items), len(ok), len(failed))
        assert r["status"] == "partial" and r["duration_s"] is not None
        finite = [g.entropy_after for (rr, _, _), g in fx.answers.items() if rr == run]
        assert r["mean_entropy_after"] == pytest.approx(sum(finite) / len(finite))


def test_a_root_with_a_quote_in_its_name_is_escaped(fx: Fixture, tmp_path: Path) -> None:
    odd = tmp_path / "it's out"
    shutil.copytree(fx.root, odd)
    store = Store(str(odd))
    assert "''" in duck.views_sql(store.url)
    res = duck.run_query(store, "SELECT count(*) FROM answers")
    assert res.rows[0][0] == len(fx.answers) + len(fx.failed)


def test_malformed_sql_file_is_named(fx: Fixture, tmp_path: Path) -> None:
    bad = tmp_path / "broken.sql"
    bad.write_text("-- Purpose: broken\nSELEC * FROM answers;\n")
    with pytest.raises(duck.QueryError, match=r"broken\.sql"):
        duck.run_query(fx.store, str(bad))
    with pytest.raises(duck.QueryError, match="not found"):
        duck.run_query(fx.store, "nope.sql")
    with pytest.raises(duck.QueryError, match="no SQL statement"):
        (tmp_path / "empty.sql").write_text("-- nothing here\n")
        duck.run_query(fx.store, str(tmp_path / "empty.sql"))
    with pytest.raises(duck.QueryError, match="variable name"):
        duck.run_query(fx.store, "SELECT 1", {"bad name": "x"})


def test_unreviewed_is_least_confident_first(fx: Fixture) -> None:
    """No verdicts in this root: every latest answer waits, the least likely first, then the
    answers read once by entropy (the fixture's unlikely answer has a sure first token)."""
    rows = q(fx, "unreviewed.sql")
    answered = [g for _, g in latest(fx).values() if not isinstance(g, str)]
    answered.sort(key=lambda g: (g.answer_logprob is None, g.answer_logprob or 0, -g.entropy_after))
    assert [r["question_id"] for r in rows] == [g.question_id for g in answered]
    assert (
        rows[0]["answer_logprob"] is not None
        and rows[0]["entropy_after"] < rows[-1]["entropy_after"]
    )


def test_the_run_summary_counts_unsure_answers_as_low_confidence_sql_lists_them(
    fx: Fixture,
) -> None:
    """``egr run``'s "unsure" column uses the thresholds that low_confidence.sql defaults to:
    the same answers, counted from the rows the run wrote."""
    from egr_pipeline.summary import is_unsure

    listed = {(r["doc_id"], r["question_id"]) for r in q(fx, "low_confidence.sql")}
    rows = q(fx, "SELECT * FROM answers_latest WHERE status IN ('ok', 'no_evidence')")
    assert {(r["doc_id"], r["question_id"]) for r in rows if is_unsure(r)} == listed
    assert listed and not all(is_unsure(r) for r in q(fx, "SELECT * FROM answers"))
