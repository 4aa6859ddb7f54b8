"""The reviews table: append-only, atomic and idempotent verdict files, the reviews views, and
the canned SQL (accuracy per question and per config, answers still unreviewed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from review_fixtures import ReviewFx, query
from typer.testing import CliRunner

from egr.cli import app
from egr_pipeline import duck, schemas
from egr_pipeline.reviews import ReviewError, Verdict, write_review
from egr_pipeline.store import Store

runner = CliRunner()


def answers(root: str) -> list[dict]:
    return query(
        root,
        "SELECT run_id, work_key, doc_id, question_id, question, answer, model_id, config_hash, "
        "status FROM answers ORDER BY run_id, question_id, doc_id",
    )


def test_reviews_view_exists_and_is_typed_before_any_verdict(review_fx: ReviewFx) -> None:
    con = duck.connect(Store(review_fx.root))
    cols = con.execute("DESCRIBE reviews").fetchall()
    con.close()
    assert [c[0] for c in cols] == schemas.REVIEWS.names
    assert dict((c[0], c[1]) for c in cols)["reviewed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert query(review_fx.root, "SELECT count(*) AS n FROM reviews")[0]["n"] == 0


def test_a_verdict_is_one_row_and_a_repeated_submission_adds_none(review_fx: ReviewFx) -> None:
    store = Store(review_fx.root)
    a = next(r for r in answers(review_fx.root) if r["answer"])
    v = Verdict(a, "corrected", "ada", "1,234.56 EUR", submission="s1")
    row = write_review(store, v, egr_version="t")
    again = write_review(store, v, egr_version="t")  # a browser retry: same submission id
    assert again["review_id"] == row["review_id"]
    got = query(review_fx.root, "SELECT * FROM reviews")
    assert len(got) == 1
    r = got[0]
    assert (r["run_id"], r["work_key"], r["doc_id"], r["question_id"]) == (
        a["run_id"],
        a["work_key"],
        a["doc_id"],
        a["question_id"],
    )
    assert (r["config_hash"], r["model_id"], r["answer"]) == (
        a["config_hash"],
        a["model_id"],
        a["answer"],
    )
    assert (r["verdict"], r["corrected_answer"], r["reviewer"]) == (
        "corrected",
        "1,234.56 EUR",
        "ada",
    )
    # One atomic file per verdict, under the answer's run; no temporary file left behind.
    files = [p for p in store.parquet_files() if "/reviews/" in p]
    assert len(files) == 1 and f"run_id={a['run_id']}" in files[0]
    assert not [p for p in store.fs.find(store.path) if p.endswith(".tmp")]


def test_the_latest_verdict_wins_and_history_is_kept(review_fx: ReviewFx) -> None:
    store = Store(review_fx.root)
    a = next(r for r in answers(review_fx.root) if r["answer"])
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    write_review(store, Verdict(a, "wrong", "ada", submission="a"), egr_version="t", now=t0)
    later = t0 + timedelta(minutes=5)
    write_review(store, Verdict(a, "correct", "bob", submission="b"), egr_version="t", now=later)
    assert query(review_fx.root, "SELECT count(*) AS n FROM reviews")[0]["n"] == 2
    latest = query(review_fx.root, "SELECT verdict, reviewer FROM reviews_latest")
    assert latest == [{"verdict": "correct", "reviewer": "bob"}]


@pytest.mark.parametrize(
    ("verdict", "corrected", "message"),
    [
        ("maybe", None, "unknown verdict"),
        ("corrected", "  ", "needs the corrected answer"),
        ("correct", "x", "takes no corrected answer"),
    ],
)
def test_bad_verdicts_are_refused_and_write_nothing(
    review_fx: ReviewFx, verdict: str, corrected: str | None, message: str
) -> None:
    a = answers(review_fx.root)[0]
    with pytest.raises(ReviewError, match=message):
        write_review(Store(review_fx.root), Verdict(a, verdict, "ada", corrected), egr_version="t")
    assert query(review_fx.root, "SELECT count(*) AS n FROM reviews")[0]["n"] == 0


def _mark(root: str, verdicts: dict[tuple[str, str], str]) -> None:
    """verdicts: (run_id, question_id) -> verdict, on the invoice's answers."""
    store = Store(root)
    for a in answers(root):
        v = verdicts.get((a["run_id"], a["question_id"]))
        if v and a["answer"]:
            corrected = "fixed" if v == "corrected" else None
            write_review(store, Verdict(a, v, "ada", corrected), egr_version="t")


def test_accuracy_by_question_counts_latest_answers_verdicts(review_fx: ReviewFx) -> None:
    fx = review_fx.fx
    a, b = fx.run_a.run_id, fx.run_b.run_id
    # Run B holds the latest answers of the invoice; run A's verdict must not count by default.
    _mark(
        review_fx.root, {(b, "q_total"): "correct", (b, "q_due"): "wrong", (a, "q_due"): "correct"}
    )
    rows = {r["question_id"]: r for r in query(review_fx.root, "accuracy_by_question.sql")}
    assert rows["q_total"]["n_reviewed"] == 1 and rows["q_total"]["accuracy"] == 1.0
    assert rows["q_due"]["n_reviewed"] == 1 and rows["q_due"]["accuracy"] == 0.0
    assert rows["q_sign"]["n_reviewed"] == 0 and rows["q_sign"]["accuracy"] is None
    latest = query(
        review_fx.root, "SELECT question_id, count(*) AS n FROM answers_latest GROUP BY 1"
    )
    assert {q: rows[q]["n_answers"] for q in rows} == {r["question_id"]: r["n"] for r in latest}
    # With run set, run A's own verdicts count.
    in_a = {r["question_id"]: r for r in query(review_fx.root, "accuracy_by_question.sql", run=a)}
    assert in_a["q_due"]["n_correct"] == 1 and in_a["q_total"]["n_reviewed"] == 0


def test_accuracy_by_config_and_unreviewed(review_fx: ReviewFx) -> None:
    fx = review_fx.fx
    a, b = fx.run_a.run_id, fx.run_b.run_id
    _mark(
        review_fx.root,
        {(a, "q_total"): "correct", (a, "q_due"): "corrected", (b, "q_total"): "correct"},
    )
    by_cfg = {r["config_hash"]: r for r in query(review_fx.root, "accuracy_by_config.sql")}
    assert (by_cfg["cfgA"]["n_reviewed"], by_cfg["cfgA"]["n_correct"]) == (2, 1)
    assert by_cfg["cfgA"]["n_corrected"] == 1 and by_cfg["cfgA"]["accuracy"] == 0.5
    assert (by_cfg["cfgB"]["n_reviewed"], by_cfg["cfgB"]["accuracy"]) == (1, 1.0)
    made = {
        r["config_hash"]: r["n"]
        for r in query(review_fx.root, "SELECT config_hash, count(*) AS n FROM answers GROUP BY 1")
    }
    assert {k: v["n_answers"] for k, v in by_cfg.items()} == made

    pending = query(review_fx.root, "unreviewed.sql")
    latest = query(
        review_fx.root,
        "SELECT run_id, work_key, entropy_after FROM answers_latest WHERE answer IS NOT NULL",
    )
    reviewed = {
        (r["run_id"], r["work_key"]) for r in query(review_fx.root, "SELECT * FROM reviews")
    }
    want = [r for r in latest if (r["run_id"], r["work_key"]) not in reviewed]
    assert {(r["run_id"], r["work_key"]) for r in pending} == {
        (r["run_id"], r["work_key"]) for r in want
    }
    # least confident first, as the review page: log-likelihood per view, then entropy
    key = [(r["answer_logprob"] is None, r["answer_logprob"] or 0.0, -r["entropy_after"])
           for r in pending]  # fmt: skip
    assert key == sorted(key)


def test_egr_query_sees_the_reviews_table(review_fx: ReviewFx) -> None:
    _mark(review_fx.root, {(review_fx.fx.run_b.run_id, "q_total"): "wrong"})
    res = runner.invoke(
        app,
        ["query", "--out", review_fx.root, "--format", "csv", "accuracy_by_question.sql"],
    )
    assert res.exit_code == 0, res.output
    assert "q_total" in res.stdout
    res = runner.invoke(
        app, ["query", "--out", review_fx.root, "SELECT verdict FROM reviews", "-f", "json"]
    )
    assert res.exit_code == 0 and '"wrong"' in res.stdout


def test_extra_columns_in_answers_do_not_break_the_review_queries(review_fx: ReviewFx) -> None:
    """A later schema adds columns to answers/evidence: the review SQL names its columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = Store(review_fx.root)
    for path in [p for p in store.parquet_files() if "/answers/" in p or "/evidence/" in p]:
        t = pq.read_table(path)
        t = t.append_column("answer_round", pa.array([1] * t.num_rows, pa.int32()))
        t = t.append_column("crop_x0_n", pa.array([0.5] * t.num_rows, pa.float64()))
        pq.write_table(t, path)
    _mark(review_fx.root, {(review_fx.fx.run_b.run_id, "q_total"): "correct"})
    for f in ("accuracy_by_question.sql", "accuracy_by_config.sql", "unreviewed.sql"):
        assert query(review_fx.root, f), f
    # The review pages' own queries too.
    from egr.review.data import Filters, ReviewData
    from egr.show import load_answer_data

    data = ReviewData(store, reviewer="ada", egr_version="t")
    try:
        page = data.answers(Filters())
        assert page.total == len(query(review_fx.root, "SELECT 1 FROM answers_latest"))
        row = next(r for r in page.rows if r["answer"])
        assert data.answer_row(row["run_id"], row["work_key"])["answer"] == row["answer"]
        assert data.rounds(row["run_id"], row["work_key"])
        with data.cursor() as cur:
            assert load_answer_data(cur, row["run_id"], row["work_key"]).evidence
    finally:
        data.close()
