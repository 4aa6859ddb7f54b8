"""corpus-qa: plan -> rasterize -> ground, answer and commit in batches -> summarise.

``run_corpus_qa`` is the plain-Python entry point (CLI, demo, benchmarks); it picks the task
runner (threads by default, Dask with ``dask_address`` / ``workers``) and calls the flow.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import SettingsContext
from prefect.futures import as_completed
from prefect.settings import get_current_settings
from prefect.task_runners import ThreadPoolTaskRunner

from egr_pipeline import stopping
from egr_pipeline.liveness import RunLease, mark_dead_runs
from egr_pipeline.plan import DocItem, RunPlan
from egr_pipeline.rasterize import failed
from egr_pipeline.slots import RunCancelled, SlotTimeout
from egr_pipeline.summary import DocOutcome, FailureRateExceeded, RunSummary, crashed
from flows.params import RunParams
from flows.runners import task_runner
from tasks import progress
from tasks.answer import STOPPING, answer_documents
from tasks.persist import begin_run, finish_run, store_for
from tasks.plan import plan_corpus
from tasks.rasterize import rasterize_documents
from tasks.summarise import publish_summary

#: Threads running this flow's tasks in this process (Prefect's default is a thread per
#: submitted task; when all documents were submitted at once, a run's peak memory grew with its
#: corpus: 2.2 GB at 100 pages, 4.5 GB at 1,000). The flow keeps few tasks in flight (see
#: ``_process``); a run allowing more documents in flight gets as many threads.
TASK_THREADS = 8


@flow(
    name="corpus-qa", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=TASK_THREADS)
)
def corpus_qa(params: RunParams) -> RunSummary:
    """Answer every question about every PDF of ``params.source``, with evidence, into tables.

    Raises:
        FailureRateExceeded: too many items failed (the rows are kept).
        SlotTimeout: no model slot came free in ``slot_timeout_s`` (run row ``failed``).
        RunCancelled: SIGTERM / Ctrl-C (run row ``cancelled``; the next run resumes).
    """
    t0, log, so, p = time.perf_counter(), get_run_logger(), params.storage_options, params
    run = plan_corpus(p.source, p.questions, p.model, p.out, p.egr, p.overrides(), so)
    log.info("run %s: %d PDFs, %d items, %d already done, %d documents to process",
             run.ctx.run_id, run.plan.n_documents, run.plan.n_items, run.plan.n_done,
             len(run.todo))  # fmt: skip
    store = store_for(p.out, so)
    with stopping.graceful() as stop, RunLease(store, run.ctx.run_id):
        _mark_dead(store, run.ctx.run_id, log)
        begin_run(p.out, run.ctx, p.source, run.questions, p.recorded(run.config.to_dict()), so)
        try:
            outcomes, abort = _process(p, run, stop)
        except BaseException as exc:  # a second Ctrl-C (KeyboardInterrupt) or a crash
            finish_run(p.out, run.ctx, "cancelled" if stop.is_set() else "failed", {},
                       f"{type(exc).__name__}: {exc}", so)  # fmt: skip
            raise
        _mark_dead(store, run.ctx.run_id, log)  # runs that died while this one ran
    summary = RunSummary(
        run.ctx.run_id, p.out, p.model, run.ctx.config_hash or "", run.plan.n_documents,
        run.plan.n_done, tuple(outcomes), time.perf_counter() - t0)  # fmt: skip
    publish_summary(summary)
    too_many = summary.failure_rate > p.max_failure_rate
    if abort is not None:
        status, error = abort.status, str(abort)
    elif stop.is_set():
        status = "cancelled"
        error = f"run {run.ctx.run_id}: stopped by signal; committed batches are kept, the " \
                "next run resumes"  # fmt: skip
        abort = RunCancelled(error)
    else:
        status = "failed" if too_many else "partial" if summary.n_failed else "ok"
        error = str(FailureRateExceeded(summary, p.max_failure_rate)) if too_many else None
    finish_run(p.out, run.ctx, "failed" if status == "slot_timeout" else status,
               summary.counts(), error, so)  # fmt: skip
    log.info("%s", summary.headline())
    if abort is not None:
        abort.summary = summary
        raise abort
    if too_many:
        raise FailureRateExceeded(summary, p.max_failure_rate)
    return summary


def _mark_dead(store, run_id: str, log) -> None:
    """Mark runs that died without finishing ``crashed``; a store error here only warns (the
    next run tries again)."""
    try:
        for rid in mark_dead_runs(store, run_id):
            log.warning("run %s had died without finishing: marked crashed", rid)
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail the run
        log.warning("could not check for crashed runs under %s: %s", store.url, exc)


def _process(p: RunParams, run: RunPlan, stop) -> tuple[list, Exception | None]:
    """Rasterize the documents a chunk at a time and answer each chunk as soon as it is
    rendered; returns the outcomes and the error that stopped the run early (no model slot), if
    any.

    A task handles ``RunParams.per_task`` documents (a task run costs the Prefect server about
    35 ms of CPU; a small document's answer step not much more). Few chunks are in flight
    (``RunParams.tasks_in_flight``): tasks (and their threads), rendered pages on disk and
    memory stay bounded however large the corpus.
    """
    so = p.storage_options
    progress.total("questions", run.plan.n_items - run.plan.n_done)
    for stage in ("rasterize", "answer"):
        progress.total(stage, len(run.todo))
    ws, spec, work = run.plan.workspace, p.render_spec(), p.work_spec(run.config, run.prior)
    chunk = p.per_task(len(run.todo))
    rendering, ahead = p.tasks_in_flight(chunk)
    todo = iter(run.todo)
    rasters: dict[Any, list[DocItem]] = {}
    answers: dict[Any, list[DocItem]] = {}
    outcomes: list[DocOutcome] = []
    abort: Exception | None = None

    def track(stage: str, fut: Any, n: int) -> Any:  # a bar counts documents, not chunks
        return progress.add(stage, [fut] * n)[0]

    def top_up() -> None:
        while len(rasters) < rendering and len(rasters) + len(answers) < ahead:
            items = [] if stop.is_set() else list(itertools.islice(todo, chunk))
            if not items:
                return
            fut = rasterize_documents.submit(items, ws, spec, so)
            rasters[track("rasterize", fut, len(items))] = items

    top_up()
    while rasters or answers:
        fut = next(as_completed([*rasters, *answers]))
        try:
            result = fut.result()
        except Exception as exc:  # noqa: BLE001 - the documents become status rows
            result = exc
        if fut in rasters:
            items = rasters.pop(fut)
            if not stop.is_set():  # no new answer step after a stop request
                docs = [failed(i, result) for i in items] if isinstance(result, BaseException) \
                    else result  # fmt: skip
                answer = answer_documents.submit(docs, work, run.ctx, p.out, so)
                answers[track("answer", answer, len(items))] = items
        else:
            items = answers.pop(fut)
            results = result if isinstance(result, list) else [result] * len(items)
            for item, res in zip(items, results, strict=True):
                if isinstance(res, DocOutcome) and res.doc_status in STOPPING:
                    if res.doc_status == "slot_timeout" and abort is None:
                        abort = SlotTimeout(res.error or "no model slot")
                    stop.set()  # the other documents stop waiting too
                elif isinstance(res, BaseException):
                    outcomes.append(crashed(item.uri, len(item.questions), res))
                else:
                    outcomes.append(res)
        top_up()
    return outcomes, abort


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
        SlotTimeout, RunCancelled: see :func:`corpus_qa` (``.summary`` too).
    """
    progress.set_reporter(reporter)
    try:
        if workers and params.documents_in_flight is None:  # keep every Dask worker busy
            ahead = max(params.in_flight()[1], 3 * workers)
            params = params.model_copy(update={"documents_in_flight": ahead})
        if (workers or dask_address) and params.documents_per_task is None:
            params = params.model_copy(update={"documents_per_task": 1})  # spread over workers
        runner = task_runner(dask_address=dask_address, workers=workers)
        if runner is None and params.in_flight()[1] > TASK_THREADS:
            runner = ThreadPoolTaskRunner(max_workers=params.in_flight()[1])
        flow_fn = corpus_qa.with_options(task_runner=runner) if runner is not None else corpus_qa
        with _no_flow_heartbeats():
            return flow_fn(params=params)
    finally:
        progress.set_reporter(None)


@contextlib.contextmanager
def _no_flow_heartbeats() -> Iterator[None]:
    """Prefect's flow-run heartbeats off for a run started here: the run's own lease
    (``egr_pipeline.liveness``) is what marks a dead run crashed, and Prefect joins its heartbeat
    thread at flow exit in one-second sleeps, adding 0.5 s to every run on average. Deployment
    runs (``egr serve``) keep them."""
    settings = get_current_settings()
    quiet = settings.model_copy(
        update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})}
    )
    with SettingsContext(profile=SettingsContext.get().profile, settings=quiet):
        yield
