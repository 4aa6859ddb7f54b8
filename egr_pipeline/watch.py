"""Object-storage watching, Prefect-free: S3 notifications from SQS, or polling a prefix.

Object stores do not talk to Prefect; the bridge (``flows/bridge.py``, ``egr watch``) turns what
these functions find into Prefect events. Two sources:

- :func:`parse_s3_notification` reads the S3 event notification JSON that a bucket sends to an
  SQS queue (``Records[].eventName`` = ``ObjectCreated:*``).
- :class:`PrefixPoller` lists a prefix with fsspec (s3fs) and reports objects not seen before
  (by key and ETag), remembering what it saw in a small JSON state file.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egr_pipeline.plan import filesystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    """One new object: ``s3://bucket/key``."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")`` (prefix may be empty)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
        raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def wanted(key: str, prefix: str, suffix: str = ".pdf") -> bool:
    return key.startswith(prefix) and key.lower().endswith(suffix)


class RejectedUpload(ValueError):
    """An upload event that does not name a PDF under the configured bucket/prefix."""


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MAX_KEY = 1024  # S3's limit on key length (bytes of UTF-8)


def upload_source(configured: str, key: object, bucket: object = None) -> str:
    """The object an upload event may start a run on: ``s3://<bucket>/<key>``, where the bucket
    and prefix come from the deployment (``configured``, ``s3://bucket[/prefix]``) and the event
    contributes only a key under that prefix. Events are data, never a source of their own.

    Args:
        configured: the deployment's source, ``s3://bucket`` or ``s3://bucket/prefix``.
        key: the event's object key (``event.payload.key``), relative to the bucket.
        bucket: the event's bucket (``event.payload.bucket``), if the trigger passes it; it must
            be the configured bucket.

    Raises:
        RejectedUpload: the reason, naming the offending value.
    """
    try:
        conf_bucket, prefix = split_s3_url(configured)
    except ValueError as exc:
        raise RejectedUpload(
            f"configured source {configured!r} is not s3://bucket[/prefix]"
        ) from exc
    if bucket not in (None, "") and bucket != conf_bucket:
        raise RejectedUpload(f"bucket {bucket!r} is not the configured bucket {conf_bucket!r}")
    if not isinstance(key, str) or not key:
        raise RejectedUpload(f"key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY:
        raise RejectedUpload(f"key longer than {_MAX_KEY} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or "\\" in key:
        raise RejectedUpload(f"key {key!r} holds control characters or backslashes")
    if "://" in key or _SCHEME.match(key):
        raise RejectedUpload(f"key {key!r} looks like a URL; only a key under the prefix is read")
    if key.startswith("/"):
        raise RejectedUpload(f"key {key!r} is absolute; expected a key relative to the bucket")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise RejectedUpload(f"key {key!r} has an empty, '.' or '..' path segment")
    prefix = prefix.strip("/")
    if prefix and not key.startswith(prefix + "/"):
        raise RejectedUpload(f"key {key!r} is not under the configured prefix {prefix + '/'!r}")
    if not key.lower().endswith(".pdf"):
        raise RejectedUpload(f"key {key!r} is not a .pdf object")
    return f"s3://{conf_bucket}/{key}"


def parse_s3_notification(body: str | dict[str, Any]) -> list[ObjectCreated]:
    """The created objects of one S3 notification message (test events yield none)."""
    data = json.loads(body) if isinstance(body, str) else body
    if "Message" in data and "Records" not in data:  # delivered through SNS
        data = json.loads(data["Message"])
    out = []
    for rec in data.get("Records", []) or []:
        if not str(rec.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = rec.get("s3", {})
        obj = s3.get("object", {})
        key = urllib.parse.unquote_plus(str(obj.get("key", "")))
        bucket = str(s3.get("bucket", {}).get("name", ""))
        if bucket and key:
            out.append(ObjectCreated(bucket, key, obj.get("eTag"), obj.get("size")))
    return out


class PrefixPoller:
    """Report PDFs under ``s3://bucket/prefix`` not seen before (new key or new ETag).

    Args:
        url: ``s3://bucket/prefix``.
        state_file: where the seen (key -> ETag) map is kept between polls and restarts.
        storage_options: s3fs options (e.g. ``{"endpoint_url": ...}``).
    """

    def __init__(self, url: str, state_file: Path, storage_options: dict[str, Any] | None = None):
        self.bucket, self.prefix = split_s3_url(url)
        self.state_file = Path(state_file)
        self.fs = filesystem(url, storage_options)
        self.seen: dict[str, str] = {}
        if self.state_file.is_file():
            self.seen = json.loads(self.state_file.read_text(encoding="utf-8"))

    def poll(self) -> Iterator[ObjectCreated]:
        self.fs.invalidate_cache()
        root = f"{self.bucket}/{self.prefix}"
        for path, info in sorted(self.fs.find(root, detail=True).items()):
            key = path.split("/", 1)[1]
            if not wanted(key, self.prefix):
                continue
            etag = str(info.get("ETag") or info.get("etag") or info.get("size"))
            if self.seen.get(key) == etag:
                continue
            self.seen[key] = etag
            self._save()
            yield ObjectCreated(self.bucket, key, etag, info.get("size"))

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.seen, sort_keys=True), encoding="utf-8")
        tmp.replace(self.state_file)
