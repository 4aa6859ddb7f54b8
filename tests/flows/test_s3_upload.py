"""Upload -> S3 notification -> SQS -> egr watch bridge -> Prefect event -> on-upload run ->
Parquet rows, on a real S3 HTTP API (moto's server on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET, PREFIX = "egr-inbox", "incoming/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3(monkeypatch_module=None):
    import os

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        os.environ[k] = v
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3c = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1")
    s3c.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="egr-uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    s3c.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": PREFIX}]}},
        }]},
    )  # fmt: skip
    yield url, s3c, sqs, queue_url
    server.stop()


def _wait_runs(deployment_id, n: int, timeout: float = 240.0) -> list:
    """The deployment's flow runs once at least ``n`` exist and all are final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        if len(runs) >= n and all(r.state and r.state.is_final() for r in runs):
            return runs
        assert time.monotonic() < deadline, [(r.name, r.state) for r in runs]
        time.sleep(0.5)


def test_upload_events_run_flows_duplicates_and_same_bytes_add_nothing(
    prefect_server: str, tiny_model: str, s3, tmp_path: Path, corpus_tools
) -> None:
    import asyncio

    from prefect.runner import Runner

    from egr_pipeline.store import Store
    from egr_pipeline.watch import PrefixPoller
    from flows.bridge import poll_once, sqs_once
    from flows.serving import build_deployments, load_spec

    url, s3c, sqs, queue_url = s3
    write_corpus, write_questions = corpus_tools
    docs = write_corpus(tmp_path / "docs", ("invoice",), corrupt=True)
    questions = write_questions(tmp_path / "q.json", n=2)
    out = tmp_path / "out"
    params = {"out": str(out), "questions": str(questions), "model": tiny_model, "device": "cpu",
              "max_rounds": 1, "render_workers": 1,
              "storage_options": {"endpoint_url": url}}  # fmt: skip
    (dep,) = build_deployments(load_spec(), only=["on-upload"], params=params)
    # One served process; each triggered run is a subprocess of it, two at a time.
    runner = Runner(query_seconds=1, limit=2, pause_on_shutdown=False)
    deployment_id = runner.add_deployment(dep)
    threading.Thread(target=lambda: asyncio.run(runner.start()), daemon=True).start()
    store = Store(str(out))

    # 1. A PDF lands under the prefix (and one elsewhere): one event, one run.
    good = next(p for p in docs.iterdir() if p.name.startswith("invoice"))
    s3c.put_object(Bucket=BUCKET, Key=f"{PREFIX}{good.name}", Body=good.read_bytes())
    s3c.put_object(Bucket=BUCKET, Key="elsewhere/ignored.pdf", Body=good.read_bytes())
    found = sqs_once(f"s3://{BUCKET}/{PREFIX}", queue_url, sqs, wait_seconds=2)
    assert [o.key for o in found] == [f"{PREFIX}{good.name}"]
    # The polling fallback sees the same object and emits a duplicate event within the
    # trigger's 60 s debounce window: it starts nothing.
    poller = PrefixPoller(f"s3://{BUCKET}/{PREFIX}", tmp_path / "seen.json", {"endpoint_url": url})
    assert [o.key for o in poll_once(poller)] == [f"{PREFIX}{good.name}"]
    (run,) = _wait_runs(deployment_id, 1)
    assert run.state.type.value == "COMPLETED", run.state
    assert len(store.read("answers").to_pylist()) == 2

    # 2. A corrupt PDF and the same bytes under a new key, served concurrently. The corrupt one
    # is a run whose only items failed: its rows are written, then the failure-rate gate (0.2 in
    # prefect.yaml) fails the run. The copy's run skips all done work and adds no rows.
    s3c.put_object(
        Bucket=BUCKET, Key=f"{PREFIX}broken.pdf", Body=(docs / "broken.pdf").read_bytes()
    )
    s3c.put_object(Bucket=BUCKET, Key=f"{PREFIX}copy-{good.name}", Body=good.read_bytes())
    found = sqs_once(f"s3://{BUCKET}/{PREFIX}", queue_url, sqs, wait_seconds=2)
    assert sorted(o.key for o in found) == [f"{PREFIX}broken.pdf", f"{PREFIX}copy-{good.name}"]
    runs = _wait_runs(deployment_id, 3)
    assert len(runs) == 3  # the duplicate event of step 1 never became a run
    assert sorted(r.state.type.value for r in runs) == ["COMPLETED", "COMPLETED", "FAILED"], runs
    answers = store.read("answers").to_pylist()
    assert len(answers) == 4  # 2 distinct PDFs x 2 questions, once each
    status = {Path(d["uri"]).name: d["status"] for d in store.read("documents").to_pylist()}
    assert status == {good.name: "ok", "broken.pdf": "corrupt"}

    # 3. Hostile events (anything that can emit an event can send one): a key that is a URL
    # and a key that climbs out of the prefix. Each matches the trigger and starts a run, which
    # rejects it with a logged reason and reads nothing.
    from prefect.events import emit_event

    from flows.bridge import EVENT, flush

    hostile = {"evil-url.pdf": "file:///etc/passwd", "evil-dots.pdf": "incoming/../secret.pdf"}
    for name, key in hostile.items():
        emit_event(
            event=EVENT, resource={"prefect.resource.id": f"s3://{BUCKET}/{PREFIX}{name}"},
            payload={"bucket": BUCKET, "key": key},
        )  # fmt: skip
    flush()
    runs = _wait_runs(deployment_id, 5)
    new = [r for r in runs if r.parameters.get("key") in hostile.values()]
    assert len(new) == 2 and all(r.state.type.value == "COMPLETED" for r in new), new
    assert len(store.read("answers").to_pylist()) == 4  # nothing was read or written
    assert _logs_of(new) == {"upload event rejected"}, "each run logs why it rejected"
    runner.stop()


def _logs_of(runs: list, timeout: float = 60.0) -> set[str]:
    """The rejection lines logged by ``runs`` (waits for the API log handler to deliver)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            ids = [r.id for r in runs]
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        found = {lg.flow_run_id for lg in logs if "upload event rejected" in lg.message}
        if found == set(ids) or time.monotonic() > deadline:
            return {"upload event rejected"} if found == set(ids) else {str(len(found))}
        time.sleep(0.5)
