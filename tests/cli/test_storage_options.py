"""One storage-options story: ``--endpoint-url``, ``--profile`` and the standard AWS environment
reach an S3-compatible store the same way in query and show (the real entry point, against
moto on loopback), and ``egr run``'s "Next:" hints carry the options the run used."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from egr_cli import Egr
from store_fixtures import Fixture, build

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

BUCKET = "egr-cli"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture(scope="module")
def s3_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Fixture]]:
    """(endpoint URL, the store fixture written to s3://egr-cli/out on a moto server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", skip_instance_cache=True,
        client_kwargs={"endpoint_url": url, "region_name": "us-east-1"},
    )  # fmt: skip
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)  # fmt: skip
    pdfs = tmp_path_factory.mktemp("pdfs")
    try:
        yield url, build(f"s3://{BUCKET}/out", pdfs, fs=fs)
    finally:
        server.stop()


SQL = "SELECT count(*) AS n FROM answers_latest"


def test_query_and_show_take_the_endpoint_flag_the_env_or_a_profile(
    egr: Egr, s3_root: tuple[str, Fixture], tmp_path: Path
) -> None:
    url, _ = s3_root
    out = f"s3://{BUCKET}/out"
    by_flag = egr("query", "--out", out, SQL, "--format", "csv", "--endpoint-url", url, env=CREDS)
    assert by_flag.returncode == 0, by_flag.stderr
    by_env = egr("query", "--out", out, SQL, "--format", "csv",
                 env={**CREDS, "AWS_ENDPOINT_URL": url})  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert by_flag.stdout == by_env.stdout and int(by_flag.stdout.split()[-1]) > 0

    # A named profile from the AWS config files, no credentials in the environment.
    (tmp_path / "aws-credentials").write_text(
        "[egrtest]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    profile_env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_DEFAULT_REGION": "us-east-1",
    }  # fmt: skip
    by_profile = egr("query", "--out", out, SQL, "--format", "csv", "--endpoint-url", url,
                     "--profile", "egrtest", env=profile_env)  # fmt: skip
    assert by_profile.returncode == 0, by_profile.stderr
    assert by_profile.stdout == by_flag.stdout

    png = tmp_path / "show.png"
    shown = egr("show", "--out", out, "--doc", "invoice.pdf", "--question", "q_total",
                "--png", str(png), "--endpoint-url", url, env=CREDS)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert png.stat().st_size > 0


def test_next_hints_carry_the_run_storage_options() -> None:
    from rich.console import Console

    from egr.commands.run import print_summary
    from egr_pipeline.summary import DocOutcome, RunSummary

    docs = (DocOutcome("s3://in/a.pdf", "ok", 1, {"ok": 2}),)
    summary = RunSummary("20260101T000000Z-abcdef", "s3://bucket/out", "m", "c", 1, 0, docs, 1.0)
    con = Console(width=200, record=True)
    print_summary(summary, con, {"endpoint_url": "http://minio:9000", "profile": "lab"})
    text = con.export_text()
    hints = [ln for ln in text.splitlines() if "egr query" in ln or "egr show" in ln]
    assert len(hints) == 2, text
    for ln in hints:
        assert "--out s3://bucket/out --endpoint-url http://minio:9000 --profile lab" in ln, ln
    local = RunSummary("20260101T000000Z-abcdef", "results", "m", "c", 1, 0, docs, 1.0)
    con = Console(width=200, record=True)
    print_summary(local, con, {"endpoint_url": "http://minio:9000"})  # an s3 source, local out
    assert "--out results\n" in con.export_text() and "--endpoint-url" not in con.export_text()


def test_run_checks_an_s3_source_and_out_before_prefect(
    egr: Egr, s3_root: tuple[str, Fixture], tmp_path: Path
) -> None:
    from egr.errors import STORAGE, USAGE

    url, _ = s3_root
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").put_object(
        Bucket=BUCKET, Key="inbox/readme.txt", Body=b"no PDF here")  # fmt: skip
    (tmp_path / "q.yaml").write_text("- id: total\n  text: What is the total?\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.pdf").write_bytes(b"%PDF-1.4\n")
    cases = [
        (["run", f"s3://{BUCKET}/inbox", "-q", "q.yaml", "-o", "out"], USAGE, "no PDF files"),
        (["run", f"s3://{BUCKET}/nothing-here", "-q", "q.yaml", "-o", "out"], USAGE, "not found"),
        (["run", "docs", "-q", "q.yaml", "-o", "s3://no-such-bucket/out"], STORAGE,
         "no such bucket"),
        (["run", "docs", "-q", f"s3://{BUCKET}/q.yaml", "-o", "out"], USAGE,
         f"--questions s3://{BUCKET}/q.yaml: not found"),
    ]  # fmt: skip
    for args, code, words in cases:
        res = egr(*args, "--endpoint-url", url, env=CREDS)
        assert res.returncode == code, (args, res.stderr)
        assert words in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_the_summary_table_is_readable_at_80_columns() -> None:
    from rich.console import Console

    from egr.commands.run import print_summary
    from egr_pipeline.summary import DocOutcome, RunSummary

    names = ["scanner-output-2026-01-01-department-of-claims-batch-0042.pdf", "a.pdf"]
    docs = (
        DocOutcome(f"/in/{names[0]}", "ok", 12, {"ok": 1000, "no_evidence": 20, "timeout": 3},
                   truncated=True, unsure=170),
        DocOutcome(f"/in/{names[1]}", "encrypted", 0, {"encrypted": 18}),
    )  # fmt: skip
    summary = RunSummary("20260101T000000Z-abcdef", "out", "m", "c", 2, 0, docs, 12.0)
    con = Console(width=80, record=True)
    print_summary(summary, con, {})
    text = con.export_text()
    table = text[: text.index("\nrun 2026")]
    assert max(len(ln) for ln in table.splitlines()) <= 80
    for header in ("document", "status", "pages", "answered", "no evidence", "failed"):
        assert header in table, table  # whole headers, not "answ…"
    assert "…" not in table
    first_column = "".join(ln.split("│")[1].strip() for ln in table.splitlines() if "│" in ln)
    for name in names:  # long names fold onto more lines but stay whole
        assert name in first_column, first_column
    for value in ("1000", "ok, truncated", "encrypted", "TOTAL", "2 docs"):
        assert value in table, (value, table)
    assert table.count("21") == 1  # the TOTAL row's failed items (3 + 18)
    assert "170 unsure" in text  # the headline
    assert "low_confidence.sql" in text and "170 of this run's answers look unsure" in text
