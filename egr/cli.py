"""The ``egr`` command line. Each sub-command lives in ``egr/commands/<name>.py`` and exposes a
function named ``command``; heavy imports (torch, prefect) stay inside those functions so that
``egr --help`` is fast."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from egr.errors import guard

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
    app.command(_name)(guard(_mod.command))


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (also EGR_DEBUG=1), anywhere."
    ),
) -> None:
    """egr: Entropy-Gradient Grounding for PDF question answering."""
    if debug:
        os.environ["EGR_DEBUG"] = "1"


def _take_debug_flag(argv: list[str]) -> list[str]:
    """``--debug`` is accepted anywhere on the line (before a ``--``): it sets EGR_DEBUG."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    os.environ["EGR_DEBUG"] = "1"
    return [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)]


def main() -> None:  # pragma: no cover - console entry
    """The console entry: usage errors are one line too (exit 2), see egr/errors.py."""
    # typer vendors click; its exception classes are not re-exported except BadParameter's base.
    from typer import Abort
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    from egr.errors import INTERRUPTED, USAGE, debug_enabled

    args = _take_debug_flag(sys.argv[1:])
    try:
        code = app(args=args, prog_name="egr", standalone_mode=False)
    except NoArgsIsHelpError:
        app(args=[*args, "--help"], prog_name="egr")  # typer's help page, as before
        return
    except UsageError as exc:
        if debug_enabled():
            raise
        cmd = exc.ctx.command_path if exc.ctx is not None else "egr"
        typer.secho(f"error: {exc.format_message()} (see {cmd} --help)", fg="red", err=True)
        sys.exit(USAGE)
    except Abort:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(INTERRUPTED)
    except ClickException as exc:
        typer.secho(f"error: {exc.format_message()}", fg="red", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
