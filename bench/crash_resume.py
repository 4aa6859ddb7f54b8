"""Re-run after ``kill -9``: does it start at once and take only the time of the remaining work?

    .venv/bin/python bench/crash_resume.py --docs 4 --batch-size 4 --kill-at answer:8

Real ``egr run`` processes on Prefect's embedded server (each starts its own, as a user's would;
the kill takes the whole process group, server included), a tiny model and a synthetic corpus:

1. a full run on a fresh output (T_full);
2. a no-op re-run of it: the fixed cost of a run (start-up, planning, T_fixed);
3. a run on a second fresh output killed with SIGKILL at ``--kill-at`` (see egr_pipeline/faults.py);
4. the re-run on that output (T_rerun), which must skip the committed work.

Prints the share of items the killed run committed, T_rerun, the expected time
T_fixed + (remaining share) x (T_full - T_fixed), and their ratio (1.0 = no penalty for the crash).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EGR = str(Path(sys.executable).with_name("egr"))


def run(args: list[str], fault: str | None = None) -> tuple[float, int]:
    """Wall time and exit code of one ``egr run``; prints its headline (flow time) and any
    slot wait it reported."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("EGR_FAULT", None)
    if fault:
        env["EGR_FAULT"] = fault
    t0 = time.perf_counter()
    proc = subprocess.run([EGR, "run", *args], env=env, capture_output=True, text=True,
                          start_new_session=True)  # fmt: skip
    wall = time.perf_counter() - t0
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("run ") or "waiting for model slot" in line:
            print(f"  [{wall:.1f} s wall] {line.strip()}")
    return wall, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--kill-at", default="answer:8")
    a = ap.parse_args()
    from egr.tiny import build_tiny
    from egr_pipeline.store import Store

    work = Path(tempfile.mkdtemp(prefix="egr-crash-bench-"))
    os.environ.setdefault("EGR_SLOT_DIR", str(work / "slots"))
    subprocess.run([EGR, "synth", str(work / "c"), "--docs", str(a.docs), "--seed", "5"],
                   check=True, capture_output=True)  # fmt: skip
    model = str(build_tiny("qwen2_5_vl", work / "tiny"))

    def args(out: str) -> list[str]:
        return [str(work / "c"), "--questions", str(work / "c" / "questions.yaml"), "--out",
                str(work / out), "--model", model, "--max-rounds", "1", "--max-pages", "2",
                "--batch-size", str(a.batch_size), "--render-workers", "1"]  # fmt: skip

    t_full, code = run(args("a"))
    assert code == 0, code
    n_items = len(Store(str(work / "a")).commits())
    t_fixed, code = run(args("a"))
    assert code == 0, code
    _, code = run(args("b"), fault=a.kill_at)
    print(f"killed run exit code {code} (SIGKILL = -9)")
    done = len(Store(str(work / "b")).commits())
    t_rerun, code = run(args("b"))
    assert code == 0, code
    remaining = 1 - done / n_items
    expected = t_fixed + remaining * (t_full - t_fixed)
    print(f"items {n_items}; the killed run committed {done} ({done / n_items:.0%})")
    print(f"T_full {t_full:.1f} s, T_fixed (no-op re-run) {t_fixed:.1f} s")
    print(f"T_rerun {t_rerun:.1f} s vs expected {expected:.1f} s for the remaining "
          f"{remaining:.0%}: ratio {t_rerun / expected:.2f}")  # fmt: skip
    runs = Store(str(work / "b")).run_rows()
    print("runs on the killed output:", sorted(r["status"] for r in runs.values()))


if __name__ == "__main__":
    main()
