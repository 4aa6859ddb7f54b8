"""An `egr run` against S3 through a proxy that injects 503s, slow replies and dropped
connections: the run retries and finishes with exactly one answer per pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faultkit import FaultyS3Proxy, finish, one_row_per_pair, start

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "egr-faults"


def test_run_through_5xx_slow_and_dropped_connections(fault_env, tmp_path: Path, monkeypatch):
    from egr_pipeline.store import Store

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultyS3Proxy(f"http://{host}:{port}", every_503=5, every_slow=9, every_drop=11,
                          delay_s=0.5)  # fmt: skip
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"http://{host}:{port}"})
        fs.mkdir(BUCKET)
        for pdf in sorted(os.listdir(fault_env.docs)):
            fs.put_file(str(fault_env.docs / pdf), f"{BUCKET}/in/{pdf}")
        e, out = fault_env, f"s3://{BUCKET}/out"
        proc = start(f"s3://{BUCKET}/in", e.questions, out, e.model, e.api_url, e.slot_dir,
                     "--endpoint-url", proxy.url, env=creds)  # fmt: skip
        code, stdout, err = finish(proc)
        assert code == 0, stdout[-3000:] + err[-3000:]
        assert proxy.injected["503"] and proxy.injected["slow"] and proxy.injected["drop"]
        store = Store(out, fs=fs)
        one_row_per_pair(store, e.n_pairs)
        assert store.read("answers", raw=True).num_rows == e.n_pairs
        print(f"s3 faults injected: {dict(proxy.injected)}")
    finally:
        proxy.close()
        server.stop()
