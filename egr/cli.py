"""The ``egr`` command line. Each sub-command lives in ``egr/commands/<name>.py`` and exposes a
function named ``command``; heavy imports (torch, prefect) stay inside those functions so that
``egr --help`` is fast."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="egr",
    help="Answer questions about PDF corpora and show exactly where each answer came from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (command name, module under egr.commands). Add one line per command.
COMMANDS: list[tuple[str, str]] = [
    ("synth", "synth"),
]

for _name, _module in COMMANDS:
    _mod = importlib.import_module(f"egr.commands.{_module}")
    app.command(_name)(_mod.command)


@app.callback()
def _main() -> None:
    """egr: Entropy-Gradient Grounding for PDF question answering."""


def main() -> None:  # pragma: no cover - console entry
    app()
