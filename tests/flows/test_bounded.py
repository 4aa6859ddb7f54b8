"""A run keeps few documents in flight however large its corpus: a bounded number rendering, a
bounded number rendered and waiting for their answer step (tasks, threads, pages on disk and
memory do not grow with the corpus)."""

from __future__ import annotations

import threading
from pathlib import Path

import tasks.answer as answer_task
import tasks.rasterize as raster_task
from egr_pipeline.store import Store
from flows.corpus_qa import run_corpus_qa
from flows.params import RunParams

N_DOCS = 14


def test_documents_in_flight_stay_bounded(
    prefect_server: str, tiny_model: str, tmp_path: Path, corpus_tools, monkeypatch
) -> None:
    write_corpus, write_questions = corpus_tools
    docs = write_corpus(tmp_path / "docs", ("invoice",) * N_DOCS)
    questions = write_questions(tmp_path / "q.json", n=1)
    lock = threading.Lock()
    seen = {"rendering": 0, "max_rendering": 0, "started": 0, "answered": 0, "max_ahead": 0}
    real_render, real_answer = raster_task.rasterize, answer_task._answer

    def render(*args, **kwargs):
        with lock:
            seen["rendering"] += 1
            seen["started"] += 1
            seen["max_rendering"] = max(seen["max_rendering"], seen["rendering"])
            seen["max_ahead"] = max(seen["max_ahead"], seen["started"] - seen["answered"])
        try:
            return real_render(*args, **kwargs)
        finally:
            with lock:
                seen["rendering"] -= 1

    def answer(*args, **kwargs):
        try:
            return real_answer(*args, **kwargs)
        finally:
            with lock:
                seen["answered"] += 1

    monkeypatch.setattr(raster_task, "rasterize", render)
    monkeypatch.setattr(answer_task, "_answer", answer)
    params = RunParams(source=str(docs), questions=str(questions), out=str(tmp_path / "out"),
                       model=tiny_model, max_rounds=1, render_workers=1)  # fmt: skip
    summary = run_corpus_qa(params)

    assert summary.n_documents == N_DOCS and summary.n_failed == 0
    answers = Store(str(tmp_path / "out")).read("answers")
    assert answers.num_rows == N_DOCS, "every document answered exactly once"
    rendering, ahead = params.in_flight()
    assert (rendering, ahead) == (2, 4)
    assert 1 <= seen["max_rendering"] <= rendering
    assert seen["max_ahead"] <= ahead, f"{seen['max_ahead']} documents ahead of answering"
    assert seen["started"] == N_DOCS


def test_documents_in_flight_follow_workers_slots_or_the_explicit_bound() -> None:
    base = {"source": "in", "questions": "q.yaml", "model": "m"}
    assert RunParams(**base).in_flight() == (4, 6)  # 2 render workers, 1 slot
    assert RunParams(**base, render_workers=1, gpu_slots=3).in_flight() == (2, 8)
    assert RunParams(**base, documents_in_flight=12).in_flight() == (12, 12)


def test_threads_reach_the_model_work(monkeypatch) -> None:
    import torch

    from egr_pipeline import models

    base = {"source": "in", "questions": "q.yaml", "model": "m"}
    spec = RunParams(**base, threads=1).work_spec(None, {})  # type: ignore[arg-type]
    assert spec.threads == 1
    assert RunParams(**base).work_spec(None, {}).threads is None  # type: ignore[arg-type]
    before = torch.get_num_threads()
    try:
        models.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
