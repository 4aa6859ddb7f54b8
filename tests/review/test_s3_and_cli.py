"""`egr review` over an s3:// output (moto on loopback, the storage options `egr review` passes),
and the command's refusals: a non-loopback address, a missing root, a busy port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from store_fixtures import build
from typer.testing import CliRunner

from egr.cli import app
from egr.review.app import create_app
from egr.review.data import ReviewData
from egr_pipeline import duck
from egr_pipeline.store import Store

pytest.importorskip("moto.server")
from s3_fixtures import CREDS, make_fs, moto_s3

BUCKET = "egr-review"
runner = CliRunner()


@pytest.fixture(scope="module")
def s3_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    pdfs = tmp_path_factory.mktemp("s3pdfs")
    with moto_s3(BUCKET) as endpoint:
        root = f"s3://{BUCKET}/out"
        fx = build(root, pdfs, fs=make_fs(endpoint))
        inv = fx.docs["invoice.pdf"]
        # The run's source is the local PDF folder: its ground truth is found there.
        (pdfs / "ground_truth.jsonl").write_text(
            json.dumps({"doc_id": inv, "question_id": "q_due", "answer": "2026-03-31"}) + "\n"
        )
        yield root, endpoint


def test_review_an_s3_output(s3_root: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, endpoint = s3_root
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # What `egr review --out s3://... --endpoint-url URL` builds.
    store = Store(root, storage_options={"endpoint_url": endpoint})
    data = ReviewData(store, reviewer="ada", egr_version="test")
    try:
        assert data.ground_truth_files
        with TestClient(create_app(data)) as c:
            page = c.get("/answers", params={"question": "q_due", "status": "ok"}).text
            assert "2026-03-31" in page  # the ground truth column
            a = duck.run_query(
                Store(root, fs=make_fs(endpoint)),
                "SELECT run_id, work_key FROM answers_latest WHERE status = 'ok' "
                "AND question_id = 'q_due'",
            ).rows[0]
            assert c.get(f"/answer/{a[0]}/{a[1]}/page.png").status_code == 200
            res = c.post(
                "/api/review", json={"run_id": a[0], "work_key": a[1], "verdict": "correct"}
            )
            assert res.status_code == 200, res.text
            page = c.get("/answers", params={"verdict": "correct"}).text
            assert '<b id="total">1</b>' in page
    finally:
        data.close()
    fs = make_fs(endpoint)
    keys = fs.find(f"{BUCKET}/out/reviews")
    assert len(keys) == 1 and f"run_id={a[0]}" in keys[0]
    rows = duck.run_query(Store(root, fs=fs), "accuracy_by_question.sql").rows
    assert ("q_due", 1.0) in {(r[0], r[6]) for r in rows}


def test_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    res = runner.invoke(app, ["review", "--out", str(tmp_path), "--host", "0.0.0.0"])
    assert res.exit_code == 2
    assert "not a loopback address" in res.stderr and "Traceback" not in res.output


def test_missing_root_is_a_one_line_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["review", "--out", str(tmp_path / "nothing")])
    assert res.exit_code == 1
    assert "does not exist" in res.stderr and "Traceback" not in res.output


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    fx = build(str(tmp_path / "out"), pdfs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = runner.invoke(app, ["review", "--out", fx.root, "--port", str(port)])
    assert res.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr


def test_unreadable_ground_truth_file_is_a_one_line_error(tmp_path: Path) -> None:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    fx = build(str(tmp_path / "out"), pdfs)
    bad = tmp_path / "gt.jsonl"
    bad.write_text('{"doc_id": "x", "question_id": "q", "answer": "a"}\nnot json\n')
    res = runner.invoke(app, ["review", "--out", fx.root, "--ground-truth", str(bad)])
    assert res.exit_code == 1
    assert f"ground truth {bad}: line 2: not JSON" in res.stderr and "Traceback" not in res.output
