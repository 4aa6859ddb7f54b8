"""``egr tiny-model OUT --type MODEL_TYPE``: build a tiny random checkpoint for tests and demos."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    out: Path = typer.Argument(..., help="Directory to write the checkpoint to (created)."),
    model_type: str = typer.Option(
        "qwen2_5_vl", "--type", "-t", help="HF model_type, e.g. qwen2_5_vl, qwen2_vl, llava."
    ),
) -> None:
    """Build a tiny random checkpoint (model + processor) loadable with from_pretrained."""
    import torch

    from egr.tiny import build_tiny, tiny_model_types

    known = tiny_model_types()
    if model_type not in known:
        typer.echo(f"unknown --type {model_type!r}; known: {', '.join(known)}", err=True)
        raise typer.Exit(2)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    path = build_tiny(model_type, out)
    typer.echo(f"wrote a tiny {model_type} checkpoint to {path}")
