"""``egr run``: the corpus QA flow on Prefect's embedded server, with progress bars."""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from egr.commands._options import EndpointUrlArg, ProfileArg, StopRuleArg, StopTauArg
from egr.commands._prefect_env import prefect_defaults
from egr.errors import (
    INTERRUPTED,
    RunFailed,
    UsageError,
    debug_enabled,
    quiet_expected_errors,
)
from egr.storage import check_out_writable, count_pdfs, is_remote, storage_flags, storage_options

STAGES = ("rasterize", "answer", "questions")


class BarsReporter:
    """Rich progress bars fed by the flow's futures (polled for ``done()`` in a thread)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks = {s: progress.add_task(s, total=0) for s in STAGES}
        self.futures: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="egr-progress", daemon=True)
        self.thread.start()

    def add(self, stage: str, futures: list[Any]) -> None:
        with self.lock:
            self.futures.setdefault(stage, []).extend(futures)
            if stage not in self.tasks:
                self.tasks[stage] = self.progress.add_task(stage, total=0)
            # a total set in advance (count) stays: futures may be added as the run goes
            known = self.progress.tasks[self.tasks[stage]].total or 0
            self.progress.update(self.tasks[stage], total=max(known, len(self.futures[stage])))

    def count(self, stage: str, total: int | None = None, advance: int = 0) -> None:
        """A counter bar (questions): its total, or ``advance`` more done."""
        with self.lock:
            if stage not in self.tasks:
                self.tasks[stage] = self.progress.add_task(stage, total=0)
            if total is not None:
                self.progress.update(self.tasks[stage], total=total)
            if advance:
                self.progress.advance(self.tasks[stage], advance)

    def _poll(self) -> None:
        while not self.stop.wait(0.2):
            with self.lock:
                for stage, futs in self.futures.items():
                    done = sum(1 for f in futs if f.done())
                    self.progress.update(self.tasks[stage], completed=done)  # futures stages only

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self._poll_once()

    def _poll_once(self) -> None:
        with self.lock:
            for stage, futs in self.futures.items():
                if futs:
                    self.progress.update(self.tasks[stage], completed=sum(f.done() for f in futs))


def print_summary(summary: Any, console: Console, storage: dict[str, Any] | None = None) -> None:
    """The run's summary table (the same rows as the Prefect artifact), its headline and the
    next commands to try (carrying the run's storage options)."""
    console.print(summary_table(summary))
    console.print(summary.headline())
    rid = summary.run_id
    sql = f"SELECT doc_id, question_id, answer, status FROM answers WHERE run_id = '{rid}'"
    out = str(summary.out)
    flags = f"--out {shlex.quote(out)}{storage_flags(storage or {}) if is_remote(out) else ''}"
    console.print(f'\nNext: [bold]egr query "{sql}" {flags}[/bold]', soft_wrap=True)  # ids: [\w-]
    console.print(f"      [bold]egr show {flags} --doc DOC --question QID[/bold]", soft_wrap=True)
    if summary.n_unsure:
        console.print(
            f"      [bold]egr query {flags} low_confidence.sql[/bold]  "
            f"({summary.n_unsure} of this run's answers look unsure; least likely first)",
            soft_wrap=True,
        )


def summary_table(summary: Any) -> Table:
    """The summary rows as a table that stays readable at 80 columns (names fold, not vanish)."""
    rows = summary.table()
    table = Table(title=f"egr run {summary.run_id}", show_lines=False, pad_edge=False)
    for col in rows[0]:
        left = col in ("document", "status")
        table.add_column(
            col.replace("_", " "), justify="left" if left else "right",
            overflow="fold", no_wrap=not left, min_width=None if left else len(col),
            ratio=2 if col == "document" else 1 if col == "status" else None,
        )  # fmt: skip
    for r in rows:
        table.add_row(*(str(v) for v in r.values()), style="bold" if r is rows[-1] else None)
    return table


_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def preflight(
    source: str,
    questions: str,
    out: str,
    model: str,
    device: str,
    storage: dict[str, Any],
    *,
    workers: int | None,
    dask_address: str | None,
) -> bool:
    """Everything that can be checked before Prefect starts, cheapest first. Returns whether
    ``out`` existed. Raises egr.errors types (one line each)."""
    from egr.preflight import check_model, check_questions

    if not _DEVICE.match(device):
        raise UsageError(f"--device {device!r}: expected cpu, cuda, cuda:N, mps or auto")
    if workers is not None and dask_address is not None:
        raise UsageError("--workers and --dask-address: give one or the other")
    check_questions(questions, storage)
    count_pdfs(source, storage)
    existed = check_out_writable(out, storage)
    check_model(model)
    return existed


def _clean_after_failure(out: str, existed: bool) -> None:
    """Remove what a failed run created under a local ``out`` that held no tables before."""
    if is_remote(out):
        return
    root = Path(out.removeprefix("file://")).expanduser()
    tables = [p for p in root.iterdir() if p.name != "_work"] if root.is_dir() else []
    if tables:
        return  # something was committed (or the folder held other things): keep it all
    shutil.rmtree(root / "_work", ignore_errors=True)
    if not existed:
        with contextlib.suppress(OSError):
            root.rmdir()


def command(
    source: Annotated[str, typer.Argument(help="A folder, a PDF, or s3://bucket/prefix.")],
    questions: Annotated[str, typer.Option("--questions", "-q", help="YAML/JSON questions.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder of the tables.")],
    model: Annotated[
        str | None, typer.Option(help="Hub id or checkpoint dir (default: the shipped reader).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto")] = "cpu",
    max_rounds: Annotated[
        int | None, typer.Option(help="Zoom rounds; 0 = plain answer (baseline).", min=0)
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Evidence regions per round.", min=1)] = None,
    stop_rule: StopRuleArg = None,
    stop_tau: StopTauArg = None,
    max_pages: Annotated[
        int | None,
        typer.Option(
            help="Pages processed per document, longer ones are cut (default: 50).",
            min=1,
        ),
    ] = None,
    top_pages: Annotated[
        int,
        typer.Option(
            help="Pages grounded per question (the best ranked); the answer surest after "
            "zooming is kept.",
            min=1,
        ),
    ] = 3,
    max_failure_rate: Annotated[
        float, typer.Option(help="Fail the run above this share of failed items.", min=0, max=1)
    ] = 0.5,
    render_timeout: Annotated[
        float, typer.Option(help="Seconds a document may take to open and render.", min=0.1)
    ] = 120.0,
    render_memory_mb: Annotated[
        int, typer.Option(help="Memory (MB) a render worker may add for one document.", min=16)
    ] = 2048,
    render_workers: Annotated[
        int, typer.Option(help="Sandboxed render worker processes.", min=1)
    ] = 2,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads of the model work (default: one per core; 1 on a shared CPU).",
            min=1,
        ),
    ] = None,
    documents_in_flight: Annotated[
        int | None,
        typer.Option(
            help="Documents rendering or awaiting answers at once [2/worker + 2/slot].", min=1
        ),
    ] = None,
    documents_per_task: Annotated[
        int | None,
        typer.Option(help="Documents per rasterize / answer task [auto; 1 on Dask].", min=1),
    ] = None,
    dask_address: Annotated[str | None, typer.Option(help="Run tasks on this Dask.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local Dask cluster of N workers.", min=1)
    ] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
    batch_size: Annotated[
        int, typer.Option(help="Commit answers every page and every N questions.", min=1)
    ] = 16,
    retry_budget: Annotated[
        int, typer.Option(help="Tries of an item that hit a limit before it is gave_up.", min=1)
    ] = 3,
    gpu_slots: Annotated[int, typer.Option(help="Model slots (GPUs) of this machine.", min=1)] = 1,
    slot_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a model slot before failing.", min=0.1)
    ] = 3600.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Prefect logs.")] = False,
) -> None:
    """Answer every question about every PDF of SOURCE, with evidence, into Parquet tables."""
    prefect_defaults(verbose)
    from egr_pipeline.models import default_model
    from flows.params import DEFAULT_MAX_PAGES, RunParams

    storage = storage_options(endpoint_url, profile)
    model = model or default_model()
    existed = preflight(
        source, questions, out, model, device, storage, workers=workers, dask_address=dask_address
    )
    params = RunParams(
        source=source, questions=questions, out=out, model=model,
        device=device, max_rounds=max_rounds, top_k=top_k, top_pages=top_pages,
        stop_rule=stop_rule.value if stop_rule else None, stop_tau=stop_tau,
        max_pages=max_pages or DEFAULT_MAX_PAGES, max_failure_rate=max_failure_rate,
        render_timeout_s=render_timeout, render_memory_mb=render_memory_mb,
        render_workers=render_workers, storage_options=storage, batch_size=batch_size,
        retry_budget=retry_budget, gpu_slots=gpu_slots, slot_timeout_s=slot_timeout,
        documents_in_flight=documents_in_flight, threads=threads,
        documents_per_task=documents_per_task,
    )  # fmt: skip
    exit_now_on_ctrl_c(out, existed)
    try:
        _run(params, storage, dask_address=dask_address, workers=workers, verbose=verbose)
    except BaseException as exc:
        if not isinstance(exc, typer.Exit) or exc.exit_code != 0:
            _clean_after_failure(out, existed)
        raise


def exit_now_on_ctrl_c(out: str, existed: bool) -> None:
    """From here on, Ctrl-C ends the command at once with one line (see :func:`_interrupted`);
    with --debug, Python's KeyboardInterrupt and its traceback instead."""
    if not debug_enabled():
        signal.signal(signal.SIGINT, lambda *_: _interrupted(out, existed))


def _interrupted(out: str, existed: bool) -> None:
    """Ctrl-C (SIGINT handler): say what is kept and leave now. Unwinding instead would wait in
    Prefect's task runner for worker threads that wait for the model's concurrency slot; every
    commit is atomic, so stopping mid-write leaves nothing half-visible, and the Prefect server
    and the render workers stop with this process."""
    import os
    import sys

    _clean_after_failure(out, existed)  # model slots are file locks: freed when this process ends
    typer.secho(
        f"interrupted: committed work is kept under {out}; the same command continues it",
        fg=typer.colors.YELLOW, err=True,
    )  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _run(
    params: Any,
    storage: dict[str, Any],
    *,
    dask_address: str | None,
    workers: int | None,
    verbose: bool = False,
) -> None:
    from egr_pipeline.slots import RunCancelled, SlotTimeout
    from egr_pipeline.summary import FailureRateExceeded
    from flows.corpus_qa import run_corpus_qa
    from flows.ephemeral import start_ephemeral_server

    if not (debug_enabled() or verbose):
        quiet_expected_errors()  # egr prints its own line for those
        for name in ("prefect.flow_runs", "prefect.task_runs"):  # failed tasks are status rows
            logging.getLogger(name).addFilter(_no_errors)
    start_ephemeral_server()
    console = Console()
    t0 = time.perf_counter()
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    failed: Exception | None = None
    with Progress(*columns, console=console, transient=False) as bars:
        reporter = BarsReporter(bars)
        try:
            summary = run_corpus_qa(
                params, dask_address=dask_address, workers=workers, reporter=reporter
            )
        except (FailureRateExceeded, SlotTimeout, RunCancelled) as exc:
            summary, failed = getattr(exc, "summary", None), exc
        finally:
            reporter.close()
    if summary is not None:
        print_summary(summary, console, storage)
    console.print(f"[dim]wall time {time.perf_counter() - t0:.1f} s[/dim]")
    if isinstance(failed, RunCancelled):
        typer.secho(f"cancelled: {failed}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(INTERRUPTED)
    if failed is not None:
        raise RunFailed(str(failed))


def _no_errors(record: logging.LogRecord) -> bool:
    """Drop Prefect's ERROR records (they carry tracebacks): a failed task is a status row or
    the run's one-line error; warnings (e.g. a wait for a model slot) still show."""
    return record.levelno < logging.ERROR
