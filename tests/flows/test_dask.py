"""The Dask path (prefect-dask) on a local 2-worker cluster: each worker loads the model once."""

from __future__ import annotations

from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")


def test_dask_two_workers_each_load_the_model_once(
    prefect_server: str, tiny_model: str, tmp_path: Path, corpus_tools, monkeypatch
) -> None:
    import dask

    from egr_pipeline.models import load_count
    from egr_pipeline.store import Store
    from flows.corpus_qa import run_corpus_qa
    from flows.params import RunParams

    write_corpus, write_questions = corpus_tools
    docs = write_corpus(tmp_path / "docs", ("invoice", "form", "table", "invoice"))
    questions = write_questions(tmp_path / "q.json", n=1)
    log_dir = tmp_path / "loads"
    monkeypatch.setenv("EGR_MODEL_LOAD_LOG", str(log_dir))  # inherited by the worker processes
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Non-daemonic workers may start the sandboxed render processes (see flows/runners.py).
    with dask.config.set({"distributed.worker.daemon": False}), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        params = RunParams(
            source=str(docs), questions=str(questions), out=str(tmp_path / "out"),
            model=tiny_model, max_rounds=0, gpu_slots=2, render_workers=1,
        )  # fmt: skip
        summary = run_corpus_qa(params, dask_address=cluster.scheduler_address)
        per_worker = client.run(load_count)
    assert summary.n_items == 4 and summary.n_failed == 0
    assert len(Store(str(tmp_path / "out")).read("answers")) == 4
    # 4 answer tasks on 2 workers: every worker that answered loaded the model exactly once.
    assert set(per_worker.values()) <= {0, 1} and sum(per_worker.values()) >= 1, per_worker
    files = sorted(log_dir.glob("loads-*.txt"))
    assert files and all(len(f.read_text().splitlines()) == 1 for f in files)
    assert len(files) == sum(per_worker.values())
