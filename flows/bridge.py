"""The storage-to-Prefect bridge behind ``egr watch``: new objects become Prefect events.

Each new PDF under the watched ``s3://bucket/prefix`` becomes one ``egr.object.created`` event
whose resource id is the object's URI; the ``on-upload`` deployment trigger matches it, debounces
it per object, and starts a run with the object's key. Sources, best first: S3 bucket
notifications delivered to an SQS queue (read with boto3), else polling the prefix with s3fs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prefect.events import emit_event
from prefect.events.worker import EventsWorker

from egr_pipeline.watch import (
    ObjectCreated,
    PrefixPoller,
    parse_s3_notification,
    split_s3_url,
    wanted,
)

logger = logging.getLogger(__name__)

#: The event name the on-upload trigger expects.
EVENT = "egr.object.created"


def emit_created(obj: ObjectCreated) -> str | None:
    """Emit one ``egr.object.created`` event; returns its id (None when events are disabled)."""
    event = emit_event(
        event=EVENT,
        resource={"prefect.resource.id": obj.uri, "prefect.resource.name": obj.key,
                  "egr.bucket": obj.bucket},
        payload={"bucket": obj.bucket, "key": obj.key, "etag": obj.etag, "size": obj.size},
    )  # fmt: skip
    logger.info("event %s for %s", EVENT, obj.uri)
    return str(event.id) if event is not None else None


def flush(timeout: float = 10.0) -> None:
    """Wait until queued events were sent (call before a short-lived process exits)."""
    EventsWorker.drain_all(timeout=timeout)


def sqs_once(url: str, queue_url: str, client: Any, wait_seconds: int = 5) -> list[ObjectCreated]:
    """Read one batch of S3 notifications from SQS, emit events for matching PDFs, delete them."""
    bucket, prefix = split_s3_url(url)
    resp = client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
    )
    emitted = []
    for msg in resp.get("Messages", []):
        for obj in parse_s3_notification(msg["Body"]):
            if obj.bucket == bucket and wanted(obj.key, prefix):
                emit_created(obj)
                emitted.append(obj)
        client.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
    return emitted


def poll_once(poller: PrefixPoller) -> list[ObjectCreated]:
    """List the prefix once and emit events for PDFs not seen before."""
    found = list(poller.poll())
    for obj in found:
        emit_created(obj)
    return found


def watch(
    url: str,
    *,
    queue_url: str | None = None,
    sqs_client: Any = None,
    state_file: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    interval: float = 10.0,
    once: bool = False,
    on_event: Callable[[Iterable[ObjectCreated]], None] | None = None,
) -> None:
    """Bridge forever (or one round with ``once``): SQS notifications if a queue is given, else
    polling ``url`` with s3fs every ``interval`` seconds."""
    poller = None
    if queue_url is None:
        state = state_file or Path.home() / ".cache" / "egr" / "watch-state.json"
        poller = PrefixPoller(url, state, storage_options)
    while True:
        if queue_url is not None:
            found = sqs_once(url, queue_url, sqs_client, wait_seconds=0 if once else 10)
        else:
            found = poll_once(poller)
        flush()
        if on_event is not None and found:
            on_event(found)
        if once:
            return
        if queue_url is None:
            time.sleep(interval)
