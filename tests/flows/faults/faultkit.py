"""Helpers of the fault suite: real ``egr run`` processes, a small corpus, and an S3 proxy in
front of moto's server that injects 5xx replies, slow replies and dropped connections."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EGR = str(Path(sys.executable).with_name("egr"))


def corpus(folder: Path, n_questions: int = 4) -> tuple[Path, Path]:
    """Three one-page synthetic documents and ``n_questions`` questions about them."""
    from egr import synth

    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    kinds = ("invoice", "form", "table")
    for name, doc in synth.generate_corpus(len(kinds), seed=11, kinds=kinds):
        (docs / name).write_bytes(doc.pdf)
    qs = synth.question_set(("invoice",))[:n_questions]
    questions = folder / "questions.json"
    questions.write_text(json.dumps([{"id": q.question_id, "text": q.text} for q in qs]))
    return docs, questions


def start(
    source: str, questions: Path, out: str, model: str, api_url: str, slot_dir: Path,
    *extra: str, fault: str | None = None, env: dict[str, str] | None = None,
) -> subprocess.Popen:  # fmt: skip
    """``egr run`` in its own process group (so a kill -9 of the group spares pytest)."""
    full_env = {**os.environ, "PREFECT_API_URL": api_url, "EGR_SLOT_DIR": str(slot_dir),
                "COLUMNS": "200", **(env or {})}  # fmt: skip
    full_env.pop("EGR_FAULT", None)
    if fault:
        full_env["EGR_FAULT"] = fault
    cmd = [EGR, "run", source, "--questions", str(questions), "--out", out, "--model", model,
           "--max-rounds", "1", "--render-workers", "1", "--batch-size", "2", *extra]  # fmt: skip
    return subprocess.Popen(
        cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"egr run hung for {timeout} s:\n{out[-3000:]}\n{err[-3000:]}"
        ) from exc
    return proc.returncode, out, err


def wait_for(cond, timeout: float = 120, every: float = 0.05) -> float:
    """Poll ``cond()`` until true; returns the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
    return time.monotonic() - t0


def one_row_per_pair(store, n_pairs: int) -> None:
    """Every (document, question) pair has exactly one visible answers row, in Python and SQL."""
    from egr_pipeline.duck import connect

    rows = store.read("answers").to_pylist()
    pairs = Counter((r["doc_id"], r["question_id"]) for r in rows)
    assert len(pairs) == n_pairs, f"{len(pairs)} pairs answered, expected {n_pairs}"
    assert set(pairs.values()) == {1}, f"duplicated pairs: {[p for p, n in pairs.items() if n > 1]}"
    con = connect(store)
    n, k = con.execute(
        "SELECT count(*), count(DISTINCT (doc_id, question_id)) FROM answers"
    ).fetchone()
    assert (n, k) == (n_pairs, n_pairs)


class FaultyS3Proxy:
    """An HTTP proxy to an S3 endpoint that answers every ``every_503``-th request with
    503 SlowDown, delays every ``every_slow``-th by ``delay_s``, and drops the connection
    without a reply on every ``every_drop``-th. ``injected`` counts what it did."""

    def __init__(self, upstream: str, every_503: int = 5, every_slow: int = 7,
                 every_drop: int = 11, delay_s: float = 1.0) -> None:  # fmt: skip
        host, port = upstream.removeprefix("http://").split(":")
        self.injected: Counter[str] = Counter()
        counter = itertools.count(1)
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                with lock:
                    n = next(counter)
                body = self._body()
                if n % every_drop == 0:
                    proxy.injected["drop"] += 1
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if n % every_503 == 0:
                    proxy.injected["503"] += 1
                    msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if n % every_slow == 0:
                    proxy.injected["slow"] += 1
                    time.sleep(delay_s)
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length")
                }
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                head = self.command == "HEAD"  # keeps the object's Content-Length
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection") and (
                        head or k.lower() != "content-length"
                    ):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
