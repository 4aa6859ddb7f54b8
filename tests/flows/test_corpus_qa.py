"""corpus-qa end to end on a local folder: tables, status rows, re-runs, the failure gate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from flows.corpus_qa import run_corpus_qa
from flows.params import RunParams
from tasks.io import models
from tasks.io.store import Store
from tasks.io.summary import FailureRateExceeded


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, corpus_tools) -> tuple[Path, Path]:
    write_corpus, write_questions = corpus_tools
    root = tmp_path_factory.mktemp("corpus")
    # invoice: 1 page; report: 3-5 pages (cut by max_pages=2); broken.pdf: not a PDF.
    docs = write_corpus(root / "docs", ("invoice", "report"), corrupt=True)
    return docs, write_questions(root / "questions.json", n=2)


def _params(corpus: tuple[Path, Path], out: Path, model: str, **kw) -> RunParams:
    docs, questions = corpus
    base = dict(max_rounds=1, max_pages=2, top_pages=1, max_failure_rate=0.5)
    return RunParams(
        source=str(docs), questions=str(questions), out=str(out), model=model, **{**base, **kw}
    )


def test_run_writes_tables_corrupt_is_a_row_and_rerun_skips(
    prefect_server: str, tiny_model: str, corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_corpus_qa(_params(corpus, out, tiny_model))
    store = Store(str(out))
    docs = {Path(r["uri"]).name: r for r in store.read("documents").to_pylist()}
    assert docs["broken.pdf"]["status"] == "corrupt"
    assert "broken.pdf" in docs["broken.pdf"]["error"]
    assert docs["invoice-00000.pdf"]["status"] == "ok"
    report = next(r for n, r in docs.items() if n.startswith("report"))
    assert report["status"] == "truncated" and report["n_pages"] > 2
    assert "first 2 of" in report["error"]
    answers = store.read("answers").to_pylist()
    assert len(answers) == 3 * 2  # 3 documents x 2 questions
    by_doc = Counter((r["doc_id"], r["status"]) for r in answers)
    assert by_doc[(docs["broken.pdf"]["doc_id"], "corrupt")] == 2
    good = [r for r in answers if r["doc_id"] != docs["broken.pdf"]["doc_id"]]
    assert all(r["status"] in ("ok", "no_evidence") and r["answer"] is not None for r in good)
    assert all(0 <= r["page"] < 2 for r in good)  # only processed pages can be chosen
    pages = store.read("pages").to_pylist()
    assert Counter(r["doc_id"] for r in pages)[report["doc_id"]] == 2
    assert first.n_items == 6 and first.n_failed == 2 and first.n_skipped == 0
    run = store.run_rows()[first.run_id]
    assert run["phase"] == "end" and run["status"] == "partial"
    assert '"max_pages": 2' in run["config"]
    assert models.LOAD_COUNT == 1  # in-process runs share one model load

    again = run_corpus_qa(_params(corpus, out, tiny_model))
    assert again.n_items == 0 and again.n_skipped == 6
    answers2 = store.read("answers").to_pylist()
    assert len(answers2) == len(answers)
    assert max(Counter(r["work_key"] for r in answers2).values()) == 1
    assert models.LOAD_COUNT == 1

    plain = run_corpus_qa(_params(corpus, out, tiny_model, max_rounds=0))
    assert plain.n_items == 6 and plain.n_skipped == 0  # another config: new work keys
    rows = [r for r in store.read("answers", run_id=plain.run_id).to_pylist() if r["answer"]]
    assert rows and all(r["stop_reason"] == "plain" and r["n_rounds"] <= 1 for r in rows)
    assert models.LOAD_COUNT == 1


def test_failure_rate_gate_fails_the_run_after_writing(
    prefect_server: str, tiny_model: str, corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "gate"
    with pytest.raises(FailureRateExceeded) as info:
        run_corpus_qa(_params(corpus, out, tiny_model, max_failure_rate=0.2, max_rounds=0))
    summary = info.value.summary
    assert summary.n_failed == 2 and summary.failure_rate == pytest.approx(2 / 6)
    store = Store(str(out))
    assert len(store.read("answers").to_pylist()) == 6  # rows are written before the gate
    run = store.run_rows()[summary.run_id]
    assert run["status"] == "failed" and "max_failure_rate" in run["error"]
