"""The exactly-once machinery without Prefect: model slots, dedup on read, the retry budget,
dead-run detection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from egr_pipeline.budget import apply_budget
from egr_pipeline.liveness import why_dead
from egr_pipeline.slots import RunCancelled, SlotTimeout, holders, model_slot
from egr_pipeline.visible import visible_pairs

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_slot_is_exclusive_and_the_wait_names_the_holder_then_gives_up(tmp_path):
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with model_slot("gpu", 1, run_id="run-a", timeout_s=5, directory=str(tmp_path)):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    assert [h["run_id"] for h in holders("gpu", 1, str(tmp_path))] == ["run-a"]
    # Another process (a run elsewhere on the machine) waits, is told who holds it, gives up.
    code = (
        "import sys\nfrom egr_pipeline.slots import model_slot, SlotTimeout\n"
        "try:\n    with model_slot('gpu', 1, run_id='run-b', timeout_s=0.5, directory=sys.argv[1],"
        " say=print):\n        print('got it')\nexcept SlotTimeout as e:\n    print('timeout', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60).stdout  # fmt: skip
    assert "waiting for model slot gpu, held by run run-a" in out
    assert "timeout run run-b: gave up after waiting 0.5 s" in out and "got it" not in out
    release.set()
    t.join()
    assert holders("gpu", 1, str(tmp_path)) == []


def test_a_slot_of_a_process_killed_9_is_free_at_once(tmp_path):
    code = (
        "import sys, time\nfrom egr_pipeline.slots import model_slot\n"
        "with model_slot('gpu', 1, run_id='doomed', timeout_s=1, directory=sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    slot = model_slot("gpu", 1, run_id="me", timeout_s=0.3, directory=str(tmp_path))
    with pytest.raises(SlotTimeout, match="held by run doomed"), slot:
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    with model_slot("gpu", 1, run_id="me", timeout_s=5, directory=str(tmp_path)) as i:
        assert i == 0
    assert time.monotonic() - t0 < 1.0


def test_a_stop_request_ends_the_wait(tmp_path):
    stop = threading.Event()
    with model_slot("gpu", 1, run_id="a", timeout_s=5, directory=str(tmp_path)):
        threading.Timer(0.3, stop.set).start()
        slot = model_slot("gpu", 1, run_id="b", timeout_s=60, directory=str(tmp_path), stop=stop)
        with pytest.raises(RunCancelled), slot:  # same process: queued behind the holder
            pass


def _commits(rows):
    names = ["run_id", "group_id", "work_key", "status", "committed_at"]
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows])


def test_visible_keeps_first_final_row_and_earlier_tries():
    t = [T0 + timedelta(seconds=i) for i in range(6)]
    commits = _commits([
        ("r1", "g1", "k1", "timeout", t[0]),  # a try before the final row: history, kept
        ("r2", "g2", "k1", "ok", t[1]),  # first final row: kept
        ("r3", "g3", "k1", "ok", t[2]),  # a concurrent run's duplicate: hidden
        ("r3", "g3", "k1b", "failed", t[3]),  # a retryable after... another key: kept
        ("r4", "g4", "k2", "ok", t[2]),  # tie on time: the smaller run id wins
        ("r0", "g5", "k2", "ok", t[2]),
        ("r5", "g6", "k1", "timeout", t[4]),  # retryable after the final row: hidden
    ])  # fmt: skip
    assert visible_pairs(commits) == {("g1", "k1"), ("g2", "k1"), ("g3", "k1b"), ("g5", "k2")}


def test_retry_budget_turns_the_last_try_into_gave_up_with_all_reasons():
    rows = [
        {"work_key": "k", "run_id": "r3", "status": "timeout", "error": "hung on page 0"},
        {"work_key": "j", "run_id": "r3", "status": "timeout", "error": "hung"},
        {"work_key": "m", "run_id": "r3", "status": "ok", "error": None},
    ]
    prior = {"k": ["r1: timeout: hung on page 0", "r2: timeout: hung on page 0"],
             "m": ["r1: failed: x", "r2: failed: y"]}  # fmt: skip
    assert apply_budget(rows, prior, budget=3) == 1
    assert rows[0]["status"] == "gave_up"
    assert rows[0]["error"].startswith("gave up after 3 tries: r1: timeout")
    assert "r3: timeout: hung on page 0" in rows[0]["error"]
    assert rows[1]["status"] == "timeout"  # first try of j: retried next run
    assert rows[2]["status"] == "ok"  # a success is never given up


def test_dead_runs_are_told_from_live_ones():
    import socket

    now = datetime.now(UTC)
    row = {"started_at": now - timedelta(seconds=5)}
    here = {"host": socket.gethostname(), "heartbeat_at": now.isoformat()}
    assert why_dead(row, {**here, "pid": os.getpid(), "pid_start": None}, 60) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert "is gone" in why_dead(row, {**here, "pid": dead.pid, "pid_start": None}, 60)
    far = {"host": "elsewhere", "pid": 1, "heartbeat_at": "t"}
    fresh = (now + timedelta(seconds=30)).isoformat()
    assert why_dead(row, {**far, "expires_at": fresh}, 60) is None
    stale = (now - timedelta(seconds=1)).isoformat()
    assert "no heartbeat since" in why_dead(row, {**far, "expires_at": stale}, 60)
    assert why_dead(row, None, 60) is None  # just started, heartbeat not written yet
    old = {"started_at": now - timedelta(seconds=120)}
    assert "no heartbeat file" in why_dead(old, None, 60)
