"""A moto S3 server on loopback for tests, and an s3fs filesystem pointed at it (offline)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CREDS = {"key": "testing", "secret": "testing"}


@contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """Start moto's threaded server on 127.0.0.1 (a free port), create ``buckets``; yields the
    endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=CREDS["key"],
        aws_secret_access_key=CREDS["secret"],
    )
    for b in buckets:
        client.create_bucket(Bucket=b)
    try:
        yield url
    finally:
        server.stop()


def make_fs(endpoint: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        **CREDS,
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        skip_instance_cache=True,
        use_listings_cache=False,
    )
