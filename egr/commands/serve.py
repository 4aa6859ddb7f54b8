"""``egr serve``: run the deployments of prefect.yaml locally (no work pool needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from egr.commands._options import EndpointUrlArg, ProfileArg
from egr.commands._prefect_env import prefect_defaults


def _param(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        out[name.strip()] = value
    return out


def command(
    prefect_yaml: Annotated[Path, typer.Option(help="Deployments file.")] = Path("prefect.yaml"),
    only: Annotated[list[str] | None, typer.Option(help="Serve only these deployments.")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Override a run parameter: NAME=VALUE (repeatable).")
    ] = None,
    watch: Annotated[
        str | None, typer.Option(help="Also bridge s3://bucket/prefix uploads into events.")
    ] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
    limit: Annotated[int, typer.Option(help="Concurrent flow runs.")] = 1,
) -> None:
    """Serve nightly-corpus-qa (cron) and on-upload (event trigger) from this process.

    Without PREFECT_API_URL a local ``prefect server`` is started on 127.0.0.1 (the ephemeral
    server has no scheduler, so cron schedules would never fire).
    """
    prefect_defaults(verbose=True)
    from egr.errors import UsageError
    from egr.storage import storage_options

    if not prefect_yaml.is_file():
        raise UsageError(f"--prefect-yaml {prefect_yaml}: no such file")
    from flows.serving import load_spec, serve_spec

    serve_spec(
        load_spec(prefect_yaml), only=only, params=_param(param or []), watch_url=watch,
        storage_options=storage_options(endpoint_url, profile), limit=limit,
        on_server=lambda url: typer.echo(f"started a local Prefect server: {url}"),
    )  # fmt: skip
