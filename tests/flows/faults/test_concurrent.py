"""Two `egr run` processes on one output, at the same time: exactly one answer per pair."""

from __future__ import annotations

import time
from pathlib import Path

from faultkit import finish, one_row_per_pair, start

from egr_pipeline.store import Store


def test_two_concurrent_runs_leave_one_row_per_pair(fault_env, tmp_path: Path):
    e, out = fault_env, tmp_path / "out"
    args = (str(e.docs), e.questions, str(out), e.model, e.api_url, e.slot_dir)
    # Two slots, so both runs really answer at the same time (the worst case for duplicates).
    first = start(*args, "--gpu-slots", "2", "--batch-size", "1")
    time.sleep(1.0)
    second = start(*args, "--gpu-slots", "2", "--batch-size", "1")
    results = [finish(first), finish(second)]
    for code, stdout, err in results:
        assert code == 0, stdout[-3000:] + err[-3000:]
    store = Store(str(out))
    one_row_per_pair(store, e.n_pairs)
    raw = store.read("answers", raw=True).num_rows
    runs = store.run_rows()
    assert len(runs) == 2 and {r["status"] for r in runs.values()} == {"ok"}
    print(f"concurrent runs: {raw} committed answers rows, {e.n_pairs} visible, {e.n_pairs} pairs")
