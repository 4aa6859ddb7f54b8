"""The store, the SQL views and the CLI on an s3:// root, offline, against moto on loopback."""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_fixtures import PAGE_H, PAGE_W, Fixture, build, grounded, make_pdf
from typer.testing import CliRunner

from egr_core.types import Box
from egr_pipeline import duck, records
from egr_pipeline.answer_rows import answer_rows
from egr_pipeline.store import CorruptPartError, Store, done_keys

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

BUCKET = "egr-test"
CREDS = {"key": "testing", "secret": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def make_fs(endpoint: str) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        **CREDS,
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        skip_instance_cache=True,
        use_listings_cache=False,
    )


@pytest.fixture(scope="module")
def fx(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    pdfs = tmp_path_factory.mktemp("s3pdfs")
    return build(f"s3://{BUCKET}/runs-root", pdfs, fs=make_fs(endpoint))


def test_layout_on_s3_and_no_temp_objects(fx: Fixture, endpoint: str) -> None:
    fs = make_fs(endpoint)
    keys = fs.find(f"{BUCKET}/runs-root")
    assert not [k for k in keys if k.endswith(".tmp")]
    for table in ("answers", "evidence", "maps", "documents", "pages"):
        parts = [k for k in keys if f"/{table}/run_id=" in k and k.endswith(".parquet")]
        assert len(parts) == 3, table
    assert len([k for k in keys if "/_commits/run_id=" in k]) == 3


def test_done_keys_and_idempotent_writes_on_s3(fx: Fixture, endpoint: str) -> None:
    root = f"s3://{BUCKET}/runs-root"
    keys = done_keys(root, fs=make_fs(endpoint))
    assert len(keys) == len(fx.answers) + len(fx.failed)
    store = Store(root, fs=make_fs(endpoint))
    q = fx.questions[0]
    g = grounded(q.question_id, q.text, "again", [Box(0.1, 0.1, 0.2, 0.2)])
    rows = answer_rows(fx.run_b, fx.docs["invoice.pdf"], 0, records.PageSize(PAGE_W, PAGE_H), g)
    assert store.write_group(fx.run_b, rows) is None  # already committed in run B
    assert store.read("answers").num_rows == len(keys)


def test_sql_views_over_s3_through_register_filesystem(fx: Fixture, endpoint: str) -> None:
    store = Store(f"s3://{BUCKET}/runs-root", fs=make_fs(endpoint))
    res = duck.run_query(store, "answers_latest.sql")
    assert len(res.rows) == 6
    diff = duck.run_query(store, "answers_diff.sql")
    assert {r[diff.columns.index("question_id")] for r in diff.rows} == {"q_total", "q_sign"}


def test_empty_and_missing_s3_roots(endpoint: str) -> None:
    with pytest.raises(duck.StoreError, match="does not exist"):
        duck.run_query(Store(f"s3://{BUCKET}/nothing-here", fs=make_fs(endpoint)), "SELECT 1")


def test_corrupt_part_on_s3_is_named(endpoint: str) -> None:
    fs = make_fs(endpoint)
    store = Store(f"s3://{BUCKET}/corrupt-root", fs=fs)
    ctx = records.RunContext("r-bad", "m", "c", "0.1.0")
    g = grounded("q1", "Q?", "a", [Box(0.1, 0.1, 0.2, 0.2)])
    commit = store.write_group(
        ctx, answer_rows(ctx, "d" * 64, 0, records.PageSize(PAGE_W, PAGE_H), g)
    )
    assert commit is not None
    part = commit.paths["evidence"]
    fs.pipe_file(part, b"PAR1 not parquet")
    with pytest.raises(CorruptPartError, match=re.escape(f"s3://{part}")):
        duck.run_query(store, "SELECT count(*) FROM evidence")
    with pytest.raises(CorruptPartError, match=re.escape(f"s3://{part}")):
        store.read("evidence")


def test_cli_query_and_show_on_s3(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from egr.cli import app

    fs = make_fs(endpoint)
    root = f"s3://{BUCKET}/cli-root"
    pdf = make_pdf(tmp_path / "page.pdf")
    uri = f"s3://{BUCKET}/inputs/page.pdf"
    fs.pipe_file(uri, pdf)  # the document itself lives on s3 too
    doc_id = hashlib.sha256(pdf).hexdigest()
    ctx = records.RunContext("r-s3", "m", "c", "0.1.0")
    g = grounded("q1", "What is the total?", "1,234.56", [Box(0.1, 0.1, 0.6, 0.16)])
    Store(root, fs=fs).write_group(
        ctx,
        records.merge(
            {"documents": [records.document_row(ctx, records.DocInfo(doc_id, uri, len(pdf), 1))]},
            answer_rows(ctx, doc_id, 0, records.PageSize(PAGE_W, PAGE_H), g),
        ),
    )
    # The CLI resolves s3:// through fsspec; botocore reads the endpoint from the environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    runner = CliRunner()
    res = runner.invoke(
        app, ["query", "--out", root, "--format", "csv", "SELECT question_id, answer FROM answers"]
    )
    assert res.exit_code == 0, res.stdout + res.stderr
    assert 'q1,"1,234.56"' in res.stdout
    png = tmp_path / "s3.png"
    res = runner.invoke(
        app, ["show", "--out", root, "--doc", "page.pdf", "--question", "q1", "--png", str(png)]
    )
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "warning" not in res.stderr  # the page was re-rendered from the s3 PDF
    assert png.stat().st_size > 10_000
