"""``egr train-reader``: train (or resume) the reference reader on synthetic documents."""

from __future__ import annotations

from typing import Annotated

import typer


def command(
    out: Annotated[str, typer.Argument(help="Output folder (state.pt, model/, train.log).")],
    minutes: Annotated[float, typer.Option(help="Wall-clock budget of this call.", min=0.1)] = 90,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the data stream.")] = 0,
    steps: Annotated[
        int, typer.Option(help="Total steps (the LR schedule's length; recipe 3: 20000).", min=1)
    ] = 20_000,
    until: Annotated[
        int | None,
        typer.Option(
            help="Stop at this step (state.pt saved there; the schedule stays --steps): "
            "reproduces a checkpoint taken mid-run, such as the shipped one.",
            min=1,
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="torch threads.", min=1)] = 2,
    export: Annotated[
        str | None,
        typer.Option(
            help="Write the weights of OUT/state.pt (any step) as a loadable checkpoint into "
            "this folder and exit; no training, safe beside a run that is going on."
        ),
    ] = None,
) -> None:
    """Train the reference reader into OUT; rerunning with the same OUT resumes from OUT/state.pt.

    Deterministic given --seed and --steps (the batch of step k depends only on the seed and k).
    Copy OUT/model into egr/assets/reader to ship it as the default model; --export DIR writes
    the current state's checkpoint (e.g. to run bench/quality.py --model DIR on it mid-run).
    """
    import logging
    from pathlib import Path

    from egr.reader.train import RecipeMismatchError, export_state, train_reader

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if export is not None:
            state = Path(out) / "state.pt"
            if not state.is_file():
                typer.echo(f"error: {state}: no training state to export", err=True)
                raise typer.Exit(1)
            path = export_state(state, export, seed=seed)
        else:
            path = train_reader(
                out, minutes=minutes, seed=seed, steps=steps, threads=threads, until=until
            )
    except RecipeMismatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"reader checkpoint: {path}")
