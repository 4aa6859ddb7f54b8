"""The ``egr`` command line. Each sub-command lives in ``egr/commands/<name>.py`` and exposes a
function named ``command``; heavy imports (torch, prefect) stay inside those functions so that
``egr --help`` is fast."""

from __future__ import annotations

import importlib
import os

import typer

# egr shows its own progress; the per-tensor "Loading weights" bars of transformers are noise here.
# An explicit setting in the environment wins.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    name="egr",
    help="Answer questions about PDF corpora and show exactly where each answer came from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (command name, module under egr.commands). Add one line per command.
COMMANDS: list[tuple[str, str]] = [
    ("tiny-model", "tiny_model"),
    ("synth", "synth"),
    ("query", "query"),
    ("show", "show"),
    ("review", "review"),
    ("run", "run"),
    ("watch", "watch"),
    ("serve", "serve"),
    ("ask", "ask"),
    ("demo", "demo"),
    ("train-reader", "train_reader"),
]

for _name, _module in COMMANDS:
    _mod = importlib.import_module(f"egr.commands.{_module}")
    app.command(_name)(_mod.command)


@app.callback()
def _main() -> None:
    """egr: Entropy-Gradient Grounding for PDF question answering."""


def main() -> None:  # pragma: no cover - console entry
    app()
