"""Every throughput ratio of issue 14 in one command, each with the settings it ran with.

    .venv/bin/python bench/run_all.py [--quick] [--device cpu|cuda]

Runs, one after another, each in its own process:

- ``bench/run_latency.py`` (shipped reader and a tiny Qwen2.5-VL): grounded / plain mean
  ``answers.latency_ms`` of ``egr run`` (target <= 2.5) and the two runs' wall times (<= 2.0);
- ``bench/grounding.py`` (both models): grounded / plain per question (<= 2.0) and 8 questions on
  one page / 8 single-question runs, EGG (<= 0.35) and plain (<= 0.20);
- ``bench/overhead.py``: the corpus-qa flow / the same work as a plain loop (<= 1.15);
- ``bench/raster.py``: the pipeline's rasterization / raw PyMuPDF throughput (>= 0.9).

and prints one table (measure, model, value, target, verdict). ``--device cuda`` runs the model
benchmarks (rows 1-6) on the GPU when one is present. ``--quick`` uses fewer documents and
repeats (a smoke run, not numbers to report). docs/performance.md keeps the last full table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> dict:
    cmd = [sys.executable, str(BENCH / script), *args, "--json"]
    print(f"$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
    docs, repeats = ("3", "1") if args.quick else ("6", "3")
    rows: list[tuple[str, str, float, str, bool]] = []
    for model in ("reader", "tiny"):
        lat = _run("run_latency.py", "--docs", docs, "--model", model, "--repeats", repeats,
                   "--device", args.device)  # fmt: skip
        rows.append(("egr run: grounded / plain answer latency", model, lat["latency_ratio"],
                     "<= 2.5", lat["latency_ratio"] <= 2.5))  # fmt: skip
        rows.append(("egr run: grounded / plain wall time", model, lat["wall_ratio"], "<= 2.0",
                     lat["wall_ratio"] <= 2.0))  # fmt: skip
        gargs = ["--repeats", repeats, "--device", args.device]
        g = _run("grounding.py", *gargs, *(["--model", "reader"] if model == "reader" else []))
        per_q = g["egg_ms_per_question"] / g["plain_ms_per_question"]
        rows.append(("bench/grounding.py: EGG / plain per question", model, per_q, "<= 2.0",
                     per_q <= 2.0))  # fmt: skip
        for mode, target in (("egg", 0.35), ("plain", 0.20)):
            r = g[f"shared_over_separate_{mode}"]
            rows.append((f"8 questions on a page / 8 runs, {mode}", model, r, f"<= {target}",
                         r <= target))  # fmt: skip
    o = _run("overhead.py", "--docs", docs, "--max-rounds", "1", "--device", args.device)
    rows.append(("corpus-qa flow / plain loop", "tiny", o["ratio"], "<= 1.15", o["ratio"] <= 1.15))
    r = _run("raster.py", "--docs", "24" if not args.quick else "6", "--repeats", repeats)
    rows.append(("rasterization: pipeline / raw PyMuPDF throughput", "-", r["ratio"], ">= 0.9",
                 r["ratio"] >= 0.9))  # fmt: skip
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nmachine: {cpu}; device {args.device}; python {platform.python_version()}")
    print(f"{'measure':52s} {'model':7s} {'value':>7s}  target   verdict")
    for name, model, value, target, ok in rows:
        print(f"{name:52s} {model:7s} {value:7.2f}  {target:7s}  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
