"""Prefect API servers started by egr die with the process that started them.

``egr run`` uses Prefect's temporary (ephemeral) server and ``egr serve`` a full local one; both
are child processes, which outlive a parent killed with SIGKILL (or a crash) unless they are told
otherwise. On Linux they are started with PR_SET_PDEATHSIG, so the kernel sends them SIGTERM
when the thread that started them ends; both are started from the main thread.
"""

from __future__ import annotations

import contextlib


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In a child process: get SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)


def start_ephemeral_server() -> None:
    """Start Prefect's temporary API server now, from this (main) thread, so that it dies with
    this process even when this process is killed (SIGKILL included): the server is started with
    PR_SET_PDEATHSIG, which fires when the thread that started it exits, hence the main thread.
    It runs in its own session, so a Ctrl-C in the terminal interrupts egr only, and the flow
    can still record its end before Prefect stops the server at exit. Nothing to do when
    PREFECT_API_URL points at a server, or off Linux. The server's own output goes to
    ``$PREFECT_HOME/egr-ephemeral-server.log``."""
    import subprocess
    import sys
    import types

    if not sys.platform.startswith("linux"):
        return
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    from pathlib import Path

    import prefect.server.api.server as server_mod

    settings = get_current_settings()
    log_path = Path(settings.home).expanduser() / "egr-ephemeral-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the server process, closed below

    def popen(*args: object, **kwargs: object) -> subprocess.Popen:
        kwargs.setdefault("preexec_fn", die_with_parent)
        kwargs.setdefault("start_new_session", True)  # Ctrl-C interrupts egr, not the server
        # Its errors (e.g. a flush cut short when egr stops) go to a log, not the terminal.
        kwargs.setdefault("stdout", log)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        return subprocess.Popen(*args, **kwargs)  # type: ignore[call-overload]

    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)
    shim.Popen = popen  # type: ignore[attr-defined]
    original = server_mod.subprocess
    server_mod.subprocess = shim  # type: ignore[assignment]
    try:
        server_mod.SubprocessASGIServer().start()
    finally:
        server_mod.subprocess = original
        log.close()  # the server holds its own descriptor
