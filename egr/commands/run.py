"""``egr run``: the corpus QA flow on Prefect's embedded server, with progress bars."""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from egr.commands._options import StopRuleArg, StopTauArg
from egr.commands._prefect_env import prefect_defaults
from egr.commands.query import fail

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
            self.progress.update(self.tasks[stage], total=len(self.futures[stage]))

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


def print_summary(summary: Any, console: Console) -> None:
    """The run's summary table (the same rows as the Prefect artifact) and its headline."""
    rows = summary.table()
    table = Table(title=f"egr run {summary.run_id}", show_lines=False)
    for col in rows[0]:
        table.add_column(col, justify="right" if col not in ("document", "status") else "left")
    for r in rows:
        table.add_row(*(str(v) for v in r.values()), style="bold" if r is rows[-1] else None)
    console.print(table)
    console.print(summary.headline())
    sql = (
        f"SELECT doc_id, question_id, answer, status FROM answers WHERE run_id = '{summary.run_id}'"
    )
    console.print(f'\nNext: [bold]egr query "{sql}" --out {summary.out}[/bold]')


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
        int | None, typer.Option(help="Pages processed per document (longer ones are cut).")
    ] = None,
    top_pages: Annotated[int, typer.Option(help="Pages grounded per question.", min=1)] = 1,
    max_failure_rate: Annotated[float, typer.Option(help="Fail the run above this.")] = 0.5,
    render_timeout: Annotated[
        float, typer.Option(help="Seconds a document may take to open and render.", min=0.1)
    ] = 120.0,
    render_memory_mb: Annotated[
        int, typer.Option(help="Memory (MB) a render worker may add for one document.", min=16)
    ] = 2048,
    render_workers: Annotated[
        int, typer.Option(help="Sandboxed render worker processes.", min=1)
    ] = 2,
    dask_address: Annotated[str | None, typer.Option(help="Run tasks on this Dask.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local Dask cluster of N workers.")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint (MinIO, ...).")] = None,
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
    debug: Annotated[bool, typer.Option(help="Show tracebacks of failed runs.")] = False,
) -> None:
    """Answer every question about every PDF of SOURCE, with evidence, into Parquet tables."""
    prefect_defaults(verbose)
    from egr.preflight import check_model, check_questions
    from egr_core.errors import EgrError
    from flows.corpus_qa import run_corpus_qa
    from flows.params import DEFAULT_MAX_PAGES, RunParams, default_model
    from tasks.io.slots import RunCancelled, SlotTimeout
    from tasks.io.summary import FailureRateExceeded

    console = Console()
    try:
        model = model or default_model()
        check_questions(questions)
        check_model(model)
    except (EgrError, FileNotFoundError) as exc:
        raise fail(str(exc), 2) from exc
    params = RunParams(
        source=source, questions=questions, out=out, model=model,
        device=device, max_rounds=max_rounds, top_k=top_k, top_pages=top_pages,
        stop_rule=stop_rule.value if stop_rule else None, stop_tau=stop_tau,
        max_pages=max_pages or DEFAULT_MAX_PAGES, max_failure_rate=max_failure_rate,
        render_timeout_s=render_timeout, render_memory_mb=render_memory_mb,
        render_workers=render_workers, batch_size=batch_size, retry_budget=retry_budget,
        gpu_slots=gpu_slots, slot_timeout_s=slot_timeout,
        storage_options={"endpoint_url": endpoint_url} if endpoint_url else {},
    )  # fmt: skip
    t0 = time.perf_counter()
    if not (verbose or debug):  # a failed run ends in one line below, not Prefect's tracebacks
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(_no_errors)
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
        except Exception as exc:
            if debug or not expected_failure(exc):
                raise
            summary, failed = None, exc
        finally:
            reporter.close()
    if summary is not None:
        print_summary(summary, console)
    console.print(f"[dim]wall time {time.perf_counter() - t0:.1f} s[/dim]")
    if failed is not None:
        code = 130 if isinstance(failed, RunCancelled) else 1
        msg = str(failed) if isinstance(failed, EgrError) else f"{type(failed).__name__}: {failed}"
        raise fail(msg, code)


def _no_errors(record: logging.LogRecord) -> bool:
    """Drop Prefect's ERROR records (they carry tracebacks): a failed task is a status row or
    the run's one-line error; warnings (e.g. a wait for a model slot) still show."""
    return record.levelno < logging.ERROR


def expected_failure(exc: BaseException) -> bool:
    """Failures a run expects and reports in one line: egr's own errors, and storage that is
    unreachable or refuses (OS, connection and botocore errors)."""
    from egr_core.errors import EgrError

    kinds: tuple[type[BaseException], ...] = (EgrError, OSError)
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        kinds = (*kinds, BotoCoreError, ClientError)
    except ImportError:
        pass
    return isinstance(exc, kinds)
