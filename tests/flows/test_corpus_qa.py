"""corpus-qa end to end on a local folder: tables, status rows (a corrupt file, a PDF that hangs
the renderer), truncation, re-runs that skip done work, and the failure gate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pdf_bombs import hang_pdf

from egr_pipeline import models
from egr_pipeline.rasterize import render_pool
from egr_pipeline.store import Store
from egr_pipeline.summary import FailureRateExceeded, is_unsure
from flows.corpus_qa import run_corpus_qa
from flows.params import RunParams


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, corpus_tools) -> tuple[Path, Path]:
    write_corpus, write_questions = corpus_tools
    root = tmp_path_factory.mktemp("corpus")
    # invoice: 1 page; report: 3-5 pages (cut by max_pages=2); broken.pdf: not a PDF;
    # hang.pdf: ~1.5 KB whose page would take minutes to render (killed by the sandbox).
    docs = write_corpus(root / "docs", ("invoice", "report"), corrupt=True)
    (docs / "hang.pdf").write_bytes(hang_pdf())
    return docs, write_questions(root / "questions.json", n=2)


class _Counts:
    """A progress reporter that remembers counter totals and advances."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.advanced: Counter[str] = Counter()

    def add(self, stage: str, futures: list) -> None:
        pass

    def count(self, stage: str, total: int | None = None, advance: int = 0) -> None:
        if total is not None:
            self.totals[stage] = total
        self.advanced[stage] += advance


def _params(corpus: tuple[Path, Path], out: Path, model: str, **kw) -> RunParams:
    docs, questions = corpus
    base = dict(max_rounds=1, max_pages=2, top_pages=1, max_failure_rate=0.5,
                render_timeout_s=3.0, render_workers=1, render_memory_mb=1024)  # fmt: skip
    return RunParams(
        source=str(docs), questions=str(questions), out=str(out), model=model, **{**base, **kw}
    )


def test_run_writes_tables_bad_documents_are_rows_rerun_skips_and_gate_fails(
    prefect_server: str, tiny_model: str, corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    pool = render_pool(1024, 1)
    seen = _Counts()
    first = run_corpus_qa(_params(corpus, out, tiny_model), reporter=seen)
    # progress in items; the document stages know their totals before their tasks start
    assert seen.totals == {"questions": 8, "rasterize": 4, "answer": 4}
    assert seen.advanced["questions"] == 8
    store = Store(str(out))
    docs = {Path(r["uri"]).name: r for r in store.read("documents").to_pylist()}
    assert docs["broken.pdf"]["status"] == "corrupt"
    assert "broken.pdf" in docs["broken.pdf"]["error"]
    hang = docs["hang.pdf"]  # the sandbox killed the worker; the run went on
    assert hang["status"] == "timeout" and hang["n_pages_processed"] == 0
    assert hang["error"].startswith(f"{corpus[0] / 'hang.pdf'}, page 0: render timeout")
    assert docs["invoice-00000.pdf"]["status"] == "ok"
    assert docs["invoice-00000.pdf"]["truncated"] is False
    report = next(r for n, r in docs.items() if n.startswith("report"))
    assert report["status"] == "ok" and report["error"] is None  # cut, but fine
    assert report["truncated"] is True and report["n_pages"] > 2
    assert report["n_pages_processed"] == 2
    answers = store.read("answers").to_pylist()
    assert len(answers) == 4 * 2  # 4 documents x 2 questions
    by_doc = Counter((r["doc_id"], r["status"]) for r in answers)
    assert by_doc[(docs["broken.pdf"]["doc_id"], "corrupt")] == 2
    assert by_doc[(hang["doc_id"], "timeout")] == 2
    bad = {docs["broken.pdf"]["doc_id"], hang["doc_id"]}
    good = [r for r in answers if r["doc_id"] not in bad]
    assert len(good) == 4
    assert all(r["status"] in ("ok", "no_evidence") and r["answer"] is not None for r in good)
    assert all(0 <= r["page"] < 2 for r in good)  # only processed pages can be chosen
    pages = store.read("pages").to_pylist()
    assert Counter(r["doc_id"] for r in pages)[report["doc_id"]] == 2
    assert first.n_items == 8 and first.n_failed == 4 and first.n_skipped == 0
    assert first.n_unsure == sum(is_unsure(r) for r in good)  # as low_confidence.sql
    run = store.run_rows()[first.run_id]
    assert run["phase"] == "end" and run["status"] == "partial"
    assert '"max_pages": 2' in run["config"]
    assert models.LOAD_COUNT == 1  # in-process runs share one model load
    # One sandbox worker rendered the 4 documents in turn: 1 spawn, +1 after the hang's kill.
    assert 1 <= pool.spawned <= 2

    # A re-run skips what is done, and retries only what a second try may fix: the timed-out
    # document (it hangs again, so its 2 retried items are all this run's items: no gate here);
    # the corrupt one stays done.
    again = run_corpus_qa(_params(corpus, out, tiny_model, max_failure_rate=1.0))
    assert again.n_items == 2 and again.n_skipped == 6 and again.n_failed == 2
    answers2 = store.read("answers").to_pylist()
    assert len(answers2) == len(answers) + 2
    retried = [r for r in answers2 if r["run_id"] == again.run_id]
    assert {(r["doc_id"], r["status"]) for r in retried} == {(hang["doc_id"], "timeout")}
    assert max(Counter((r["run_id"], r["work_key"]) for r in answers2).values()) == 1
    assert models.LOAD_COUNT == 1

    # The third try spends the retry budget (3): the rows say gave_up with every try's reason,
    # and the next run has nothing left to do.
    third = run_corpus_qa(_params(corpus, out, tiny_model, max_failure_rate=1.0))
    gave = store.read("answers", run_id=third.run_id).to_pylist()
    assert len(gave) == 2 and {r["status"] for r in gave} == {"gave_up"}
    assert all(r["error"].startswith("gave up after 3 tries: ") for r in gave)
    assert all(r["error"].count(": timeout: ") == 3 for r in gave)
    assert third.n_failed == 2  # counted in the gate of the run where it failed...
    fourth = run_corpus_qa(_params(corpus, out, tiny_model, max_failure_rate=0.0))
    assert fourth.n_items == 0 and fourth.n_skipped == 8  # ...and never retried again

    # The plain baseline has its own config hash (new work keys); with max_failure_rate 0.2 the
    # 4 failed items of 8 fail the run, after its rows are written.
    with pytest.raises(FailureRateExceeded) as info:
        run_corpus_qa(_params(corpus, out, tiny_model, max_rounds=0, max_failure_rate=0.2))
    plain = info.value.summary
    assert plain.n_items == 8 and plain.n_skipped == 0 and plain.n_failed == 4
    assert plain.failure_rate == pytest.approx(4 / 8)
    rows = store.read("answers", run_id=plain.run_id).to_pylist()
    assert len(rows) == 8  # rows are written before the gate
    answered = [r for r in rows if r["answer"]]
    assert answered and all(r["stop_reason"] == "plain" and r["n_rounds"] <= 1 for r in answered)
    run = store.run_rows()[plain.run_id]
    assert run["status"] == "failed" and "max_failure_rate" in run["error"]
    assert models.LOAD_COUNT == 1
    assert pool.spawned <= 8  # 10 documents rendered across the five runs, 3 hangs killed


def test_top_pages_keeps_the_answer_surest_after_zooming(
    prefect_server: str, tiny_model: str, corpus_tools, tmp_path: Path
) -> None:
    """``top_pages=3`` grounds three pages of a multi-page document and keeps, per question, the
    answer with the lowest first-token entropy after grounding: the same answer and entropy as
    grounding that page alone (each page split into a one-page PDF)."""
    import pymupdf

    write_corpus, write_questions = corpus_tools
    docs = write_corpus(tmp_path / "docs", ("report",))
    questions = write_questions(tmp_path / "questions.json", n=2)
    (report,) = docs.glob("*.pdf")
    singles = tmp_path / "singles"
    singles.mkdir()
    with pymupdf.open(report) as src:
        assert src.page_count >= 3
        for p in range(3):
            one = pymupdf.open()
            one.insert_pdf(src, from_page=p, to_page=p)
            one.save(singles / f"page-{p}.pdf")
            one.close()

    def answers(source: Path, out: Path) -> list[dict]:
        params = RunParams(
            source=str(source), questions=str(questions), out=str(out), model=tiny_model,
            max_rounds=1, max_pages=3, top_pages=3, max_failure_rate=0.0, render_workers=1,
        )  # fmt: skip
        run_corpus_qa(params)
        return Store(str(out)).read("answers").to_pylist()

    per_page = answers(singles, tmp_path / "singles-out")
    documents = Store(str(tmp_path / "singles-out")).read("documents").to_pylist()
    docs_rows = {r["doc_id"]: r for r in documents}
    alone = {
        (int(Path(docs_rows[r["doc_id"]]["uri"]).stem.split("-")[1]), r["question_id"]): r
        for r in per_page
    }
    together = answers(report.parent, tmp_path / "report-out")
    assert len(together) == 2 and all(r["status"] in ("ok", "no_evidence") for r in together)
    for r in together:
        qid = r["question_id"]
        entropies = {p: alone[(p, qid)]["entropy_after"] for p in range(3)}
        assert len(set(entropies.values())) > 1, "pages must differ for the test to tell"
        # the kept page is the surest (to float noise between batchings: 1e-5 nats)
        assert entropies[r["page"]] <= min(entropies.values()) + 1e-5, (qid, entropies, r["page"])
        assert r["entropy_after"] == pytest.approx(entropies[r["page"]], abs=1e-5)
        assert r["answer"] == alone[(r["page"], qid)]["answer"]
