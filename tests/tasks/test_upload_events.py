"""Upload events are data: only a .pdf key under the configured bucket/prefix becomes a source."""

from __future__ import annotations

import pytest

from egr_pipeline.watch import RejectedUpload, upload_source

CONF = "s3://egr-inbox/incoming"


def test_a_key_under_the_prefix_becomes_the_object_url() -> None:
    assert upload_source(CONF, "incoming/a.pdf") == "s3://egr-inbox/incoming/a.pdf"
    assert upload_source(CONF, "incoming/x/B.PDF", "egr-inbox") == "s3://egr-inbox/incoming/x/B.PDF"
    assert upload_source("s3://egr-inbox", "any/where.pdf", "") == "s3://egr-inbox/any/where.pdf"


@pytest.mark.parametrize(
    ("key", "bucket", "reason"),
    [
        ("file:///etc/passwd", None, "looks like a URL"),
        ("s3://other-bucket/incoming/a.pdf", None, "looks like a URL"),
        ("https://attacker.example/x.pdf", None, "looks like a URL"),
        ("c:/windows/x.pdf", None, "looks like a URL"),
        ("incoming/../secret/a.pdf", None, "'..'"),
        ("incoming/./a.pdf", None, "'..'"),
        ("incoming//a.pdf", None, "'..'"),
        ("/incoming/a.pdf", None, "absolute"),
        ("elsewhere/a.pdf", None, "not under the configured prefix"),
        ("incomingX/a.pdf", None, "not under the configured prefix"),
        ("incoming/a.txt", None, "not a .pdf"),
        ("incoming/a\x00.pdf", None, "control characters"),
        ("incoming\\..\\a.pdf", None, "backslashes"),
        ("", None, "non-empty string"),
        (None, None, "non-empty string"),
        (["incoming/a.pdf"], None, "non-empty string"),
        ("incoming/" + "a" * 1100 + ".pdf", None, "longer than"),
        ("incoming/a.pdf", "other-bucket", "not the configured bucket"),
    ],
)
def test_hostile_or_malformed_events_are_rejected_with_a_reason(
    key: object, bucket: object, reason: str
) -> None:
    with pytest.raises(RejectedUpload, match=reason.replace(".", r"\.")):
        upload_source(CONF, key, bucket)


def test_a_configured_source_that_is_not_s3_rejects_every_event() -> None:
    with pytest.raises(RejectedUpload, match="not s3://bucket"):
        upload_source("/data/inbox", "incoming/a.pdf")
