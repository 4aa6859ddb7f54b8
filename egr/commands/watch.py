"""``egr watch``: turn new PDFs in an S3 bucket/prefix into Prefect events (``on-upload``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from egr.commands._options import EndpointUrlArg, ProfileArg
from egr.commands._prefect_env import prefect_defaults


def command(
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix to watch.")],
    sqs_queue: Annotated[
        str | None, typer.Option(help="SQS queue URL receiving the bucket's notifications.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls (no queue).")] = 10.0,
    state_file: Annotated[Path | None, typer.Option(help="Poller state (seen objects).")] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
    region: Annotated[str, typer.Option(help="AWS region of the queue.")] = "us-east-1",
    once: Annotated[bool, typer.Option(help="One round, then exit.")] = False,
) -> None:
    """Emit an ``egr.object.created`` Prefect event for each new PDF under URL.

    Reads S3 bucket notifications from --sqs-queue when given (boto3), else polls URL with s3fs.
    Needs a Prefect server (PREFECT_API_URL, or run it inside ``egr serve --watch``).
    """
    prefect_defaults(verbose=True)
    from egr.errors import UsageError
    from egr.storage import remote_exists, storage_options
    from egr_pipeline.watch import split_s3_url

    storage = storage_options(endpoint_url, profile)
    try:
        split_s3_url(url)
    except ValueError as exc:
        raise UsageError(f"URL {url}: {exc}") from exc
    remote_exists(url, storage, what="URL")  # the bucket answers (StorageError otherwise)
    from flows.bridge import watch

    client = None
    if sqs_queue:
        import boto3

        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        client = session.client("sqs", endpoint_url=endpoint_url, region_name=region)
    watch(
        url, queue_url=sqs_queue, sqs_client=client, state_file=state_file,
        storage_options=storage, interval=interval, once=once,
        on_event=lambda objs: [typer.echo(f"event: {o.uri}") for o in objs],
    )  # fmt: skip
