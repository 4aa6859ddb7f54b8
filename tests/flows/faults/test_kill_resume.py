"""kill -9 at each stage, SIGTERM mid-run, and a slot nobody frees: real `egr run` processes.

Each killed run is followed by the next one on the same output, which must start at once (no
wait for the dead run's model slot), mark the dead run ``crashed``, skip what it committed, and
leave exactly one answers row per (document, question) pair.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from faultkit import finish, one_row_per_pair, start, wait_for

from egr_pipeline.slots import holders
from egr_pipeline.store import Store


def _committed(store: Store) -> int:
    return len(store.commits())


def test_kill9_at_rasterize_answer_store_then_rerun_finishes_once(fault_env, tmp_path: Path):
    e, out = fault_env, tmp_path / "out"
    store = Store(str(out))
    args = (str(e.docs), e.questions, str(out), e.model, e.api_url, e.slot_dir)
    killed = []
    # rasterize:1 = the first document is about to render; answer:3 = two batches committed,
    # the third about to be grounded (slot held); store:2 = the second batch's parts written,
    # its commit marker not yet.
    for fault in ("rasterize:1", "answer:3", "store:2"):
        before = _committed(store) if out.exists() else 0
        code, _, err = finish(start(*args, fault=fault))
        assert code == -signal.SIGKILL, err[-2000:]
        after = _committed(store) if out.exists() else 0
        assert after >= before  # a kill never loses committed work
        killed.append(after - before)
        assert holders("egr-gpu", 1, str(e.slot_dir)) == []  # the kernel freed the slot
    assert killed[1] == 2 * 2  # answer:3 died after committing 2 batches of 2 questions
    assert killed[2] >= 2  # store:2 died after committing its first batch
    code, stdout, err = finish(start(*args))
    assert code == 0, stdout[-3000:] + err[-3000:]
    assert "waiting for model slot" not in stdout + err  # no dead run's slot to wait for
    one_row_per_pair(store, e.n_pairs)
    raw = store.read("answers", raw=True)
    assert raw.num_rows == e.n_pairs  # no duplicate was even written
    runs = store.run_rows()
    assert sorted(r["status"] for r in runs.values()) == ["crashed"] * 3 + ["ok"]
    for r in runs.values():
        if r["status"] == "crashed":
            assert "died without finishing" in r["error"] and "gone" in r["error"]
    last = next(r for r in runs.values() if r["status"] == "ok")
    assert f'"skipped_items": {sum(killed)}' in last["counts"]


def test_sigterm_stops_cleanly_and_the_next_run_resumes(fault_env, tmp_path: Path):
    e, out = fault_env, tmp_path / "out"
    store = Store(str(out))
    args = (str(e.docs), e.questions, str(out), e.model, e.api_url, e.slot_dir)
    proc = start(*args, "--batch-size", "1")
    wait_for(lambda: out.exists() and _committed(store) >= 1, timeout=180)
    proc.send_signal(signal.SIGTERM)
    code, stdout, err = finish(proc)
    assert code == 130, stdout[-2000:] + err[-2000:]
    assert "Traceback" not in stdout + err
    assert "stopped by signal" in err
    assert holders("egr-gpu", 1, str(e.slot_dir)) == []
    (run,) = store.run_rows().values()
    assert run["status"] == "cancelled" and run["phase"] == "end"
    done = _committed(store)
    assert 1 <= done < e.n_pairs
    code, stdout, err = finish(start(*args))
    assert code == 0, stdout[-3000:] + err[-3000:]
    one_row_per_pair(store, e.n_pairs)
    assert store.read("answers", raw=True).num_rows == e.n_pairs


def test_a_held_slot_is_named_and_the_wait_gives_up(fault_env, tmp_path: Path):
    e, out = fault_env, tmp_path / "out"
    hold = (
        "import sys, time\nfrom egr_pipeline.slots import model_slot\n"
        "with model_slot('egr-gpu', 1, run_id='other-run', timeout_s=5, directory=sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(e.slot_dir)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        args = (str(e.docs), e.questions, str(out), e.model, e.api_url, e.slot_dir)
        code, stdout, err = finish(start(*args, "--slot-timeout", "3"))
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # (a killed holder's slot is free at once: unit test)
        holder.wait()
    assert code == 1
    text = stdout + err
    assert "Traceback" not in text
    assert f"waiting for model slot egr-gpu, held by run other-run (pid {holder.pid}" in text
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: run ") and "gave up after waiting 3 s for model slot" in last
    (run,) = Store(str(out)).run_rows().values()
    assert run["status"] == "failed" and "model slot egr-gpu" in run["error"]
