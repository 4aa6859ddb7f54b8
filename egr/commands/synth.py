"""``egr synth OUT --docs N --seed S``: write a synthetic detail-critical corpus.

OUT receives the PDFs (``<kind>-<index>.pdf``), ``questions.yaml`` (every question of the chosen
kinds, for ``egr run OUT --questions OUT/questions.yaml``) and ``ground_truth.jsonl`` (one row per
document and question that applies to it; a run also asks the other kinds' questions, which have
no expected answer and are left out of scoring).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

GROUND_TRUTH = "ground_truth.jsonl"
QUESTIONS = "questions.yaml"
_OURS = re.compile(r"^(invoice|form|table|report)-\d{5}\.pdf$")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parse_kinds(values: list[str] | None) -> tuple[str, ...]:
    from egr.synth import KINDS

    if not values:
        return KINDS
    kinds = [k.strip() for v in values for k in v.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise typer.BadParameter(
            f"unknown kind(s) {', '.join(bad) or '(none given)'}; known: {', '.join(KINDS)}",
            param_hint="--kinds",
        )
    return tuple(dict.fromkeys(kinds))  # de-duplicated, in the order given


def _check_out(out: Path, force: bool) -> list[Path]:
    """Return the files an earlier synth run left in OUT (to replace); refuse foreign PDFs."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="OUT")
    if not out.exists():
        return []
    foreign = sorted(p.name for p in out.glob("*.pdf") if not _OURS.match(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise typer.BadParameter(
            f"{out} holds {len(foreign)} PDF(s) not written by egr synth ({shown}); a corpus "
            "run over OUT would include them without ground truth. Choose another folder.",
            param_hint="OUT",
        )
    ours = [p for p in out.glob("*.pdf") if _OURS.match(p.name)]
    ours += [out / n for n in (QUESTIONS, GROUND_TRUTH) if (out / n).exists()]
    if ours and not force:
        raise typer.BadParameter(
            f"{out} already holds {len(ours)} file(s) of an earlier synth run; "
            "pass --force to replace them",
            param_hint="OUT",
        )
    return ours


@dataclass(frozen=True)
class SynthResult:
    """What :func:`write_corpus` wrote."""

    out: Path
    rows: list[dict[str, object]]
    n_questions: int
    n_docs: Counter[str]
    n_pages: Counter[str]
    n_small: Counter[str]
    elapsed_s: float

    @property
    def questions_path(self) -> Path:
        return self.out / QUESTIONS

    @property
    def ground_truth_path(self) -> Path:
        return self.out / GROUND_TRUTH


def write_corpus(
    out: Path, docs: int, seed: int, kinds: tuple[str, ...], *, force: bool, status: Any = None
) -> SynthResult:
    """Write ``docs`` PDFs, ``questions.yaml`` and ``ground_truth.jsonl`` into ``out``.

    Raises:
        typer.BadParameter: ``out`` is not a folder, holds foreign PDFs, or holds an earlier
            synth run and ``force`` is off.
    """
    from egr.synth import generate_corpus, question_set
    from egr_core.questions import dump_questions

    stale = _check_out(out, force)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    written: set[str] = set()
    n_docs: Counter[str] = Counter()
    n_pages: Counter[str] = Counter()
    n_small: Counter[str] = Counter()
    for i, (name, doc) in enumerate(generate_corpus(docs, seed, kinds)):
        _write_atomic(out / name, doc.pdf)
        written.add(name)
        gt = doc.ground_truth(name)
        rows.extend(gt)
        n_docs[doc.kind] += 1
        n_pages[doc.kind] += doc.n_pages
        n_small[doc.kind] += sum(1 for r in gt if r["small_print"])
        if status is not None:
            status.update(f"drawing documents ... {i + 1}/{docs}")
    for p in stale:
        if p.suffix == ".pdf" and p.name not in written:
            p.unlink()
    questions = question_set(kinds)
    _write_atomic(out / QUESTIONS, dump_questions(questions).encode())
    jsonl = "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows)
    _write_atomic(out / GROUND_TRUTH, jsonl.encode())
    return SynthResult(
        out, rows, len(questions), n_docs, n_pages, n_small, time.perf_counter() - t0
    )


def command(
    out: Path = typer.Argument(..., help="Folder to write the PDFs, questions and ground truth."),
    docs: int = typer.Option(20, "--docs", "-n", min=1, help="Number of documents."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed; the same seed gives the same bytes."),
    kinds: list[str] | None = typer.Option(
        None,
        "--kinds",
        "-k",
        help="Document kinds (repeat or comma-separate): invoice, form, table, report. "
        "Default: all; kinds take turns.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace files of an earlier synth run."),
) -> None:
    """Write seeded synthetic PDFs with questions and a ground-truth JSONL of answer boxes."""
    from rich.console import Console
    from rich.table import Table

    from egr.synth import QUESTIONS as BY_KIND

    console = Console()
    chosen = _parse_kinds(kinds)
    with console.status(f"drawing {docs} documents ...") as status:
        res = write_corpus(out, docs, seed, chosen, force=force, status=status)
    rows, n_docs, n_pages, n_small = res.rows, res.n_docs, res.n_pages, res.n_small
    elapsed = res.elapsed_s

    table = Table(title=f"egr synth: {docs} documents, seed {seed}", title_justify="left")
    for col in ("kind", "documents", "pages", "questions", "answers", "small print"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind in chosen:
        table.add_row(
            kind,
            str(n_docs[kind]),
            str(n_pages[kind]),
            str(len(BY_KIND[kind])),
            str(n_docs[kind] * len(BY_KIND[kind])),
            str(n_small[kind]),
        )
    table.add_row(
        "total",
        str(sum(n_docs.values())),
        str(sum(n_pages.values())),
        str(res.n_questions),
        str(len(rows)),
        str(sum(n_small.values())),
        style="bold",
    )
    console.print(table)
    console.print(f"PDFs           {out}/<kind>-<index>.pdf")
    console.print(f"questions      {out / QUESTIONS}  ({res.n_questions} questions, all kinds)")
    console.print(f"ground truth   {out / GROUND_TRUTH}  ({len(rows)} rows)")
    console.print(f"done in {elapsed:.1f} s")
    console.print(f"ask them:      egr run {out} --questions {out / QUESTIONS} --out <tables>")
