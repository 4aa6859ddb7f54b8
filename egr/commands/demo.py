"""``egr demo``: the main job on embedded defaults, offline (what ``make demo`` runs).

1. draws a small synthetic corpus (``egr synth``) under ``OUT/corpus``;
2. answers every question about every document with the corpus QA flow on Prefect's embedded
   server, with the shipped reference reader (``egr run``), writing the tables under ``OUT``;
3. scores the answers against the corpus's ground truth: exact match, and whether the top
   evidence box holds the answer.

Re-running it redraws the same bytes, so every work key is already done and nothing is
recomputed or duplicated; the score then covers the latest answers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from egr.commands._prefect_env import prefect_defaults


def _latest(rows: list[dict[str, Any]], config_hash: str, model_id: str) -> list[dict[str, Any]]:
    """The most recent answer per (doc, question) made with this model and config."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("config_hash") != config_hash or r.get("model_id") != model_id:
            continue
        key = (r["doc_id"], r["question_id"])
        if key not in best or (r["written_at"], r["run_id"]) > (
            best[key]["written_at"],
            best[key]["run_id"],
        ):
            best[key] = r
    return list(best.values())


def print_score(report: Any, console: Any, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    cols = ("kind", "questions", "exact match", "top-1 box holds answer", "top-1 box area")
    cols += ("answered",)
    for col in cols:
        table.add_column(col, justify="left" if col == "kind" else "right")
    for k in (*report.kinds, report.total):
        table.add_row(
            k.kind,
            str(k.n),
            f"{k.exact}/{k.n} ({k.accuracy:.0%})",
            f"{k.evidence_hits}/{k.n} ({k.evidence_rate:.0%})",
            f"{k.box_area:.1%} of page",
            str(k.answered),
            style="bold" if k.kind == "all" else None,
        )
    console.print(table)
    if report.missing:
        console.print(f"[yellow]{report.missing} ground-truth pairs have no answer row[/yellow]")


def command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("egr-out/demo"),
    docs: Annotated[int, typer.Option("--docs", "-n", min=1, help="Documents to draw.")] = 6,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Corpus seed.")] = 2026,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated kinds: invoice, form, table, report.")
    ] = "invoice,form",
    model: Annotated[
        str | None, typer.Option(help="Hub id or checkpoint dir (default: the shipped reader).")
    ] = None,
    max_rounds: Annotated[
        int | None, typer.Option(help="Zoom rounds; 0 = plain answer.", min=0)
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Draw a synthetic corpus, answer it with evidence, and score it against the ground truth."""
    prefect_defaults(False)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from egr.commands.query import fail
    from egr.commands.run import BarsReporter, exit_now_on_ctrl_c, print_summary
    from egr.commands.synth import _parse_kinds, write_corpus
    from egr.errors import debug_enabled, quiet_expected_errors
    from egr.preflight import check_model
    from egr.reader import default_model_path
    from egr.scoring import load_ground_truth, score
    from egr.storage import check_out_writable
    from egr_core.errors import EgrError
    from egr_pipeline.store import Store
    from egr_pipeline.summary import FailureRateExceeded
    from flows.corpus_qa import run_corpus_qa
    from flows.ephemeral import start_ephemeral_server
    from flows.params import RunParams

    existed = check_out_writable(str(out), {})  # --out a file or read-only: one line, exit 3
    console = Console()
    t0 = time.perf_counter()
    corpus = out / "corpus"
    with console.status("drawing the synthetic corpus ..."):
        synth = write_corpus(corpus, docs, seed, _parse_kinds([kinds]), force=True)
    console.print(
        f"[bold]1/3 corpus[/bold]  {sum(synth.n_docs.values())} PDFs, "
        f"{sum(synth.n_pages.values())} pages, {synth.n_questions} questions -> {corpus}"
    )

    try:
        model_id = model or default_model_path()
        check_model(model_id)
    except (EgrError, FileNotFoundError) as exc:
        raise fail(str(exc), 2) from exc
    params = RunParams(
        source=str(corpus),
        questions=str(synth.questions_path),
        out=str(out),
        model=model_id,
        device=device,
        max_rounds=max_rounds,
    )
    console.print(f"[bold]2/3 corpus QA[/bold]  model {model_id}")
    start_ephemeral_server()
    exit_now_on_ctrl_c(str(out), existed)
    if not debug_enabled():
        quiet_expected_errors()  # e.g. the failure-rate gate: reported below in one line
    columns = (
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    failed: FailureRateExceeded | None = None
    with Progress(*columns, console=console) as bars:
        reporter = BarsReporter(bars)
        try:
            summary = run_corpus_qa(params, reporter=reporter)
        except FailureRateExceeded as exc:
            summary, failed = exc.summary, exc
        finally:
            reporter.close()
    print_summary(summary, console)

    store = Store(str(out))
    answers = _latest(store.read("answers").to_pylist(), summary.config_hash, summary.model_id)
    chosen = {(a["run_id"], a["doc_id"], a["question_id"]) for a in answers}
    rows = store.read("evidence")  # older parts lack the crop columns: read whole, then pick
    keep = ["run_id", "doc_id", "question_id", "rank", "page", "x0_n", "y0_n", "x1_n", "y1_n"]
    keep += [
        c for c in ("crop_x0_n", "crop_y0_n", "crop_x1_n", "crop_y1_n") if c in rows.column_names
    ]
    evidence = [
        e
        for e in rows.select(keep).to_pylist()
        if (e["run_id"], e["doc_id"], e["question_id"]) in chosen
    ]
    report = score(load_ground_truth(synth.ground_truth_path), answers, evidence)
    print_score(report, console, "3/3 grounded answers vs ground truth")
    console.print(
        f"[dim]demo done in {time.perf_counter() - t0:.1f} s; "
        f"look at one: egr show --out {out} --doc <doc_id> --question <question_id>[/dim]"
    )
    if failed is not None:
        console.print(f"[red]{failed}[/red]")
        raise typer.Exit(code=1)
