"""``egr serve``: the deployments of ``prefect.yaml`` served from this process (no work pool).

The file stays the single source of truth: each deployment's entrypoint, parameters, cron
schedules and event triggers are read from it and handed to ``Flow.to_deployment``; ``serve``
then polls for their runs. Schedules need a full Prefect server (the ephemeral one runs no
scheduler), so ``local_server`` can start ``prefect server start`` on a loopback port first.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.ephemeral import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_spec(path: str | Path = REPO_ROOT / "prefect.yaml") -> dict[str, Any]:
    """The parsed ``prefect.yaml`` (YAML anchors and merge keys resolved)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def build_deployments(
    spec: dict[str, Any],
    *,
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    root: Path = REPO_ROOT,
) -> list[Any]:
    """``RunnerDeployment``s for the file's deployments (``only`` selects by name); ``params``
    updates every deployment's ``params`` parameter (e.g. ``{"out": ..., "source": ...}``)."""
    out = []
    for dep in spec.get("deployments", []):
        if only and dep["name"] not in only:
            continue
        path, func = dep["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{root / path}:{func}")
        parameters = dict(dep.get("parameters") or {})
        if params and "params" in parameters:
            parameters["params"] = {**parameters["params"], **params}
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
            for s in dep.get("schedules") or [] if "cron" in s
        ]  # fmt: skip
        triggers = [DeploymentEventTrigger(**t) for t in dep.get("triggers") or []]
        out.append(
            flow.to_deployment(
                name=dep["name"], description=dep.get("description"), tags=dep.get("tags"),
                parameters=parameters, schedules=schedules or None, triggers=triggers or None,
            )
        )  # fmt: skip
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(timeout: float = 120.0) -> Iterator[str]:
    """Start ``prefect server start`` on 127.0.0.1 (all services, incl. the scheduler) and set
    ``PREFECT_API_URL`` in this process's settings while it runs. Yields the API URL.

    The server runs in its own session, so a Ctrl-C in the terminal interrupts only this process,
    which pauses its deployments while the server still answers and then stops it; it gets
    SIGTERM when this process dies in any other way (PR_SET_PDEATHSIG)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        start_new_session=True,  # Ctrl-C reaches egr serve only; the server stops last
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server did not start on port {port}") from None
                time.sleep(0.5)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def serve_spec(
    spec: dict[str, Any],
    *,
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    watch_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    limit: int = 1,
    on_server: Any = None,
) -> None:
    """Serve the file's deployments until interrupted; start a local server when no
    ``PREFECT_API_URL`` is set, and optionally run the upload bridge in a thread."""
    from prefect import serve

    with contextlib.ExitStack() as stack:
        if not PREFECT_API_URL.value():
            url = stack.enter_context(local_server())
            if on_server is not None:
                on_server(url)
        deployments = build_deployments(spec, only=only, params=params)
        if watch_url:
            from flows.bridge import watch

            threading.Thread(
                target=watch, args=(watch_url,), kwargs={"storage_options": storage_options},
                daemon=True,
            ).start()  # fmt: skip
        serve(*deployments, limit=limit)
