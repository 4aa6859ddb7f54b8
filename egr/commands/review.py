"""``egr review --out DIR``: a local web page to check answers against their evidence."""

from __future__ import annotations

import getpass
import ipaddress
import socket
from typing import Annotated

import typer

from egr.commands._options import EndpointUrlArg, ProfileArg
from egr.commands.query import fail
from egr.storage import storage_options

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def command(
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output root: a folder or s3://bucket/prefix.")
    ],
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0 = any free one).")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Loopback by default; anything else needs --allow-remote."
        ),
    ] = LOOPBACK,
    allow_remote: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback --host (the page has no login: trusted nets)."),
    ] = False,
    reviewer: Annotated[
        str | None, typer.Option(help="Name stamped on verdicts (default: your user name).")
    ] = None,
    ground_truth: Annotated[
        list[str] | None,
        typer.Option(
            help="ground_truth.jsonl file(s) to show beside answers (default: the one next to "
            "each run's source, where egr synth and egr demo write it)."
        ),
    ] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
) -> None:
    """Serve a web page to review answers against their evidence; verdicts go to `reviews`."""
    import uvicorn

    from egr import __version__
    from egr.review.app import create_app
    from egr.review.data import ReviewData
    from egr_pipeline.store import Store, StoreError

    if not _is_loopback(host) and not allow_remote:
        raise fail(f"--host {host} is not a loopback address; add --allow-remote to bind it", 2)
    try:
        name = reviewer or getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        name = "reviewer"
    try:
        store = Store(out, storage_options=storage_options(endpoint_url, profile) or None)
        data = ReviewData(store, reviewer=name, egr_version=__version__, ground_truth=ground_truth)
    except StoreError as exc:
        raise fail(str(exc), 1) from exc
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        data.close()
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1) from exc
    port = sock.getsockname()[1]
    # On loopback, answer only loopback Host headers (no DNS rebinding from other sites).
    hosts = [host, "127.0.0.1", "localhost", "::1", "[::1]"] if _is_loopback(host) else None
    app = create_app(data, allowed_hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    typer.echo(f"egr review: {store.url} as reviewer {name!r}")
    if data.ground_truth_files:
        typer.echo(f"ground truth: {', '.join(data.ground_truth_files)}")
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"open http://{shown}:{port}/answers  (Ctrl+C to stop)")
    try:
        server.run(sockets=[sock])
    finally:
        data.close()
