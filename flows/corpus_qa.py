"""corpus-qa: plan -> rasterize -> ground and answer -> store -> summarise.

``run_corpus_qa`` is the plain-Python entry point (CLI, demo, benchmarks); it picks the task
runner (threads by default, Dask with ``dask_address`` / ``workers``) and calls the flow.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, unmapped

from flows import progress
from flows.params import GPU_LIMIT, RunParams
from flows.runners import task_runner
from tasks.answer import answer_document
from tasks.io.rasterize import failed
from tasks.io.summary import FailureRateExceeded, RunSummary, crashed
from tasks.limits import ensure_gpu_limit
from tasks.persist import begin_run, finish_run, write_document
from tasks.plan import plan_corpus
from tasks.rasterize import rasterize_document
from tasks.summarise import publish_summary


@flow(name="corpus-qa", log_prints=False)
def corpus_qa(params: RunParams) -> RunSummary:
    """Answer every question about every PDF of ``params.source``, with evidence, into tables."""
    t0, log, so, p = time.perf_counter(), get_run_logger(), params.storage_options, params
    run = plan_corpus(p.source, p.questions, p.model, p.out, p.egr, p.overrides(), so)
    log.info("run %s: %d PDFs, %d items, %d already done, %d documents to process",
             run.ctx.run_id, run.plan.n_documents, run.plan.n_items, run.plan.n_done,
             len(run.todo))  # fmt: skip
    ensure_gpu_limit(GPU_LIMIT, p.gpu_slots)
    begin_run(p.out, run.ctx, p.source, run.questions, p.recorded(run.config.to_dict()), so)
    ws, spec = unmapped(run.plan.workspace), unmapped(p.render_spec())  # sandbox limits
    rasters = progress.add("rasterize", rasterize_document.map(run.todo, ws, spec, unmapped(so)))
    writes, items = [], []
    for item, doc in progress.settle(rasters, run.todo):
        doc = failed(item, doc) if isinstance(doc, BaseException) else doc
        rows = answer_document.submit(
            doc, p.model, p.device, p.dtype, run.config, p.top_pages, run.ctx, GPU_LIMIT
        )
        progress.add("answer", [rows])
        writes += progress.add("store", [write_document.submit(rows, p.out, run.ctx, so)])
        items.append(item)
    outcomes = [
        crashed(item.uri, len(item.questions), o) if isinstance(o, BaseException) else o
        for item, o in progress.settle(writes, items)
    ]  # fmt: skip
    summary = RunSummary(
        run.ctx.run_id, p.out, p.model, run.ctx.config_hash or "", run.plan.n_documents,
        run.plan.n_done, tuple(outcomes), time.perf_counter() - t0)  # fmt: skip
    publish_summary(summary)
    too_many = summary.failure_rate > p.max_failure_rate
    status = "failed" if too_many else "partial" if summary.n_failed else "ok"
    error = str(FailureRateExceeded(summary, p.max_failure_rate)) if too_many else None
    finish_run(p.out, run.ctx, status, summary.counts(), error, so)
    log.info("%s", summary.headline())
    if too_many:
        raise FailureRateExceeded(summary, p.max_failure_rate)
    return summary


def run_corpus_qa(
    params: RunParams,
    *,
    dask_address: str | None = None,
    workers: int | None = None,
    reporter: progress.Reporter | None = None,
) -> RunSummary:
    """Run the flow in this process (Prefect's ephemeral server unless PREFECT_API_URL is set).

    Raises:
        FailureRateExceeded: too many items failed (``.summary`` holds the run's summary).
    """
    progress.set_reporter(reporter)
    try:
        runner = task_runner(dask_address=dask_address, workers=workers)
        flow_fn = corpus_qa.with_options(task_runner=runner) if runner is not None else corpus_qa
        return flow_fn(params=params)
    finally:
        progress.set_reporter(None)
