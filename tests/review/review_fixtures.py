"""Helpers of the `egr review` tests and bench: the review server in a thread, Chromium flags,
and a generated large output root (100k answers) written through the real store."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store_fixtures import Fixture

from egr.review.app import create_app
from egr.review.data import ReviewData

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Flags that work in containers without a GPU, sandbox or network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1100",
)


@dataclass
class ReviewFx:
    root: str
    fx: Fixture
    expected: dict[tuple[str, str], str]  # (doc_id, question_id) -> ground-truth answer


def query(root: str, sql: str, **variables: str) -> list[dict]:
    """Rows (as dicts) of inline SQL or a sql/ file over the views of ``root``."""
    from egr_pipeline import duck
    from egr_pipeline.store import Store

    res = duck.run_query(Store(root), sql, variables)
    return [dict(zip(res.columns, r, strict=True)) for r in res.rows]


@contextmanager
def serve(data: ReviewData) -> Iterator[str]:
    """Run the review app on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(data, allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def build_many(root: str, n: int, *, n_docs: int = 2000, seed: int = 0) -> list[dict]:
    """An output root with ``n`` answers (one run, ``n_docs`` documents, n / n_docs questions
    each), written through the real store in one group; returns the answers rows.

    Entropies are random (a few null, as failed items have), statuses mostly ok.
    """
    import numpy as np

    from egr_pipeline import records
    from egr_pipeline.store import Store

    rng = np.random.default_rng(seed)
    ctx = records.RunContext("20260301T020000Z-many00", "tiny/qwen", "cfgM", "test")
    store = Store(root)
    per_doc = max(1, n // n_docs)
    docs = [hashlib.sha256(f"doc {i}".encode()).hexdigest() for i in range(n_docs)]
    statuses = rng.choice(["ok", "ok", "ok", "no_evidence", "failed"], size=n)
    entropy = rng.gamma(2.0, 0.6, size=n)
    rows = []
    for i in range(n):
        doc, qid = docs[i // per_doc % n_docs], f"q{i % per_doc:03d}"
        failed = statuses[i] == "failed"
        rows.append(
            {
                **ctx.provenance(),
                "work_key": records.work_key(doc, qid, qid, ctx.model_id, ctx.config_hash),
                "doc_id": doc,
                "question_id": qid,
                "question": f"question {qid}?",
                "answer": None if failed else f"answer {i}",
                "page": 0,
                "status": str(statuses[i]),
                "error": "model failed" if failed else None,
                "entropy_before": None if failed else float(entropy[i]) + 1.0,
                "entropy_after": None if failed else float(entropy[i]),
                "n_rounds": 1,
                "n_evidence": 0,
                "stop_reason": "se_increase",
                "latency_ms": 10.0,
                "timings": "{}",
            }
        )
    documents = [
        records.document_row(ctx, records.DocInfo(d, f"/corpus/doc-{j:05d}.pdf", 1000, 1))
        for j, d in enumerate(docs)
    ]
    store.begin_run(ctx)
    store.write_group(ctx, {"answers": rows, "documents": documents})
    store.finish_run(ctx)
    return rows
