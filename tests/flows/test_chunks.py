"""A task handles a chunk of documents (fewer Prefect task runs), and a chunk never shares its
bad luck: a document whose fetch keeps failing, one whose rendering raises and one whose answer
step crashes each end alone, their chunk-mates answered exactly once."""

from __future__ import annotations

from pathlib import Path

import tasks.answer as answer_task
import tasks.rasterize as raster_task
from egr_pipeline.store import Store
from flows import corpus_qa
from flows.corpus_qa import run_corpus_qa
from flows.params import RunParams

N_DOCS = 5


def test_documents_per_task_default_and_in_flight_in_tasks() -> None:
    base = {"source": "in", "questions": "q.yaml", "model": "m"}
    p = RunParams(**base)  # (4, 6) documents in flight
    assert p.per_task(1) == 1 and p.per_task(6) == 2 and p.per_task(7) == 3
    assert p.per_task(10_000) == 3, "two tasks ahead fit in the in-flight bound"
    assert p.tasks_in_flight(2) == (2, 3) and p.tasks_in_flight(3) == (1, 2)
    assert p.tasks_in_flight(1) == p.in_flight()
    assert RunParams(**base, documents_per_task=5).per_task(2) == 5
    one = RunParams(**base, documents_in_flight=1)  # the explicit bound holds
    assert one.per_task(50) == 1 and one.tasks_in_flight(1) == (1, 1)


def test_a_chunks_bad_documents_end_alone(
    prefect_server: str, tiny_model: str, tmp_path: Path, corpus_tools, monkeypatch
) -> None:
    write_corpus, write_questions = corpus_tools
    docs = write_corpus(tmp_path / "docs", ("invoice",) * N_DOCS)
    names = sorted(p.name for p in docs.iterdir())
    flaky, broken, crashing = names[1], names[2], names[3]
    questions = write_questions(tmp_path / "q.json", n=1)
    tries: dict[str, int] = {}
    chunks: list[int] = []
    real_render, real_answer = raster_task.rasterize, answer_task._answer
    real_submit = corpus_qa.rasterize_documents.submit

    def render(item, *args, **kwargs):
        name = Path(item.uri).name
        tries[name] = tries.get(name, 0) + 1
        if name == flaky:
            raise ConnectionError(f"{name}: connection reset by peer")
        if name == broken:
            raise ValueError(f"{name}: an unexpected renderer error")
        return real_render(item, *args, **kwargs)

    def answer(doc, *args, **kwargs):
        if Path(doc.uri).name == crashing:
            raise RuntimeError("a bug in the answer step")
        return real_answer(doc, *args, **kwargs)

    def submit(items, *args, **kwargs):
        chunks.append(len(items))
        return real_submit(items, *args, **kwargs)

    monkeypatch.setattr(raster_task, "rasterize", render)
    monkeypatch.setattr(raster_task, "RETRY_DELAYS_S", (0.0, 0.0))
    monkeypatch.setattr(answer_task, "_answer", answer)
    monkeypatch.setattr(corpus_qa.rasterize_documents, "submit", submit)
    params = RunParams(source=str(docs), questions=str(questions), out=str(tmp_path / "out"),
                       model=tiny_model, max_rounds=1, render_workers=1, documents_per_task=3,
                       max_failure_rate=1.0)  # fmt: skip
    summary = run_corpus_qa(params)

    assert chunks == [3, 2], "two rasterize tasks for five documents"
    assert tries[flaky] == 3, "a transient error is retried for its document (2 delays)"
    assert tries[broken] == 1, "a document error is not retried"
    status = {Path(o.uri).name: o.doc_status for o in summary.docs}
    assert status[flaky] == "io_error" and status[broken] == "failed"
    assert status[crashing] == "crashed"
    good = [n for n in names if n not in (flaky, broken, crashing)]
    assert all(status[n] == "ok" for n in good), status
    store = Store(str(tmp_path / "out"))
    uri = {r["doc_id"]: Path(r["uri"]).name for r in store.read("documents").to_pylist()}
    answers = store.read("answers").to_pylist()
    answered = sorted(uri[r["doc_id"]] for r in answers if r["status"] == "ok")
    assert answered == good, "chunk-mates of the bad documents answered, once each"
    assert crashing not in {uri.get(r["doc_id"]) for r in answers}, "crashed: no rows"
