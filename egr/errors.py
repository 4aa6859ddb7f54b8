"""Expected failures of the command line: one line on stderr, one exit code per kind.

Every command runs inside :func:`guard` (``egr/cli.py`` wraps each one), so they all end the same
way: an expected failure is a :class:`UserError` (or an exception a translator registered with
:func:`register` turns into one) and prints ``error: <thing>: <reason>`` with the exit code of its
kind; ``--debug`` (or ``EGR_DEBUG=1``) re-raises it with the traceback. Anything else is a bug and
keeps Python's traceback (exit code 1 as usual). A command that runs a flow calls
:func:`quiet_expected_errors`, so Prefect's engine does not log a traceback for those either.

To make a new failure expected: raise a UserError subclass where it is detected, or
``register(SomeError, lambda e: RunFailed(str(e)))`` once (e.g. at import of the module that
defines it); the exit code follows from the UserError subclass.

Exit codes, the same for every command (README, "Exit codes"):

====  ==========================================================================================
0     success
1     the work ran and failed (e.g. ``egr run`` over its failure rate), or an unexpected error
2     bad usage or input: an option value, a missing/invalid file, source or model, no documents
3     the output cannot be written: ``--out`` is a file, read-only, no permission
4     the storage cannot be reached: S3 endpoint down, credentials refused, bucket missing
130   interrupted (Ctrl-C)
====  ==========================================================================================
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer

OK, FAILED, USAGE, OUTPUT, STORAGE, INTERRUPTED = 0, 1, 2, 3, 4, 130

#: (code, meaning) in the order of the documented table.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (FAILED, "the work ran and failed (or an unexpected error, with its traceback)"),
    (USAGE, "bad usage or input: option value, missing/invalid file, source, model, no documents"),
    (OUTPUT, "the output cannot be written: --out is a file, read-only, no permission"),
    (STORAGE, "the storage cannot be reached: endpoint down, credentials refused, no bucket"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


class UserError(Exception):
    """An expected failure: printed as one line, exit code :attr:`exit_code`.

    Args:
        message: names the thing (file, option, URL) and the reason, e.g. ``"--out x: is a file"``.
    """

    exit_code: int = FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(UserError):
    """Bad input: an option value, a path that names nothing, an invalid file or model."""

    exit_code = USAGE


class OutputError(UserError):
    """The output location cannot be written."""

    exit_code = OUTPUT


class StorageError(UserError):
    """The storage (an object store endpoint) cannot be reached or refuses access."""

    exit_code = STORAGE


class RunFailed(UserError):
    """The work ran and failed as a whole (details were printed before)."""

    exit_code = FAILED


E = TypeVar("E", bound=BaseException)
_TRANSLATORS: list[tuple[type[BaseException], Callable[[Any], UserError | None]]] = []


def register(exc_type: type[E], translate: Callable[[E], UserError | None]) -> None:
    """Treat ``exc_type`` as an expected failure: ``translate`` turns it into a UserError
    (None = not expected after all; it propagates). Later registrations are tried first."""
    _TRANSLATORS.insert(0, (exc_type, translate))


def as_user_error(exc: BaseException) -> UserError | None:
    """The UserError an exception stands for, or None (a bug)."""
    if isinstance(exc, UserError):
        return exc
    for exc_type, translate in _TRANSLATORS:
        if isinstance(exc, exc_type):
            found = translate(exc)
            if found is not None:
                return found
    return None


class _ExpectedErrorFilter(logging.Filter):
    """Drops log records that carry an exception egr reports as one line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or as_user_error(exc) is None


_FILTER = _ExpectedErrorFilter()


def quiet_expected_errors(
    loggers: tuple[str, ...] = ("prefect.flow_runs", "prefect.task_runs"),
) -> None:
    """Keep Prefect's engine from logging a traceback for an exception that the command turns
    into its one line (any registered expected failure). Other errors keep their logs. Call it
    after Prefect configured logging (after importing a flow); not under --debug/--verbose."""
    for name in loggers:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def debug_enabled() -> bool:
    return os.environ.get("EGR_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def report(err: UserError) -> None:
    """Print the one line on stderr."""
    typer.secho(f"error: {err.message}", fg=typer.colors.RED, err=True)


F = TypeVar("F", bound=Callable[..., Any])


def guard(fn: F) -> F:
    """Wrap a command: expected failures end as one line and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            err = as_user_error(exc)
            if err is None or debug_enabled():
                raise
            report(err)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _register_defaults() -> None:
    """Errors of the core and the store that are the user's input, not a bug."""
    from egr_core.errors import EgrError

    # InputError, ModelLoadError, UnsupportedModelError, DocumentError, the store's StoreError:
    # the input names something wrong. A corrupt file under an output root is broken data (1).
    register(EgrError, _core_error)
    register(Exception, _storage_exception)


def _core_error(exc: Exception) -> UserError:
    if getattr(exc, "status", None) == "corrupt_part":
        return RunFailed(str(exc))
    return UsageError(str(exc))


#: Exception classes (by name, so botocore stays unimported) of an object store that cannot be
#: reached or refuses access, wherever in a command they surface.
_STORAGE_EXCEPTIONS = frozenset({"BotoCoreError", "ClientError", "NoCredentialsError"})


def _storage_exception(exc: Exception) -> UserError | None:
    if not any(c.__name__ in _STORAGE_EXCEPTIONS for c in type(exc).__mro__):
        return None
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StorageError(f"storage: {type(exc).__name__}: {text}")


_register_defaults()
