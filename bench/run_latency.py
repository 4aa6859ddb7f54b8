"""Grounded vs plain ``egr run`` on the same synthetic documents: answer latency and wall time.

    .venv/bin/python bench/run_latency.py --docs 6 [--model reader|tiny|PATH] [--json]

Draws ``--docs`` documents with ``egr synth`` (seed ``--seed``), then runs ``egr run`` twice on
them, each into a fresh output root and in its own process (as a user would): once grounded
(the model's own config) and once plain (``--max-rounds 0``), in alternating order over
``--repeats`` pairs so background load hits both alike. Prints the mean ``answers.latency_ms`` of
each and the ratio grounded / plain (issue 14 target <= 2.5), and the wall-time ratio of the two
``egr run`` commands (target <= 2.0), with the settings of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _models import resolve_model

ROOT = Path(__file__).resolve().parents[1]
EGR = [sys.executable, "-m", "egr"]
TARGETS = {"latency": 2.5, "wall": 2.0}


def _egr(args: list[str], env: dict[str, str]) -> float:
    """Run one ``egr`` command; its wall time in seconds (raises on failure)."""
    t = time.perf_counter()
    proc = subprocess.run([*EGR, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"egr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def _latency(out: Path) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    mean, n = con.execute(
        "select avg(latency_ms), count(*) from read_parquet(?) where status = 'ok'",
        [str(out / "answers" / "*" / "*.parquet")],
    ).fetchone()
    return float(mean), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--model", default="reader", help="reader (shipped), tiny, or a checkpoint")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    ap.add_argument("--device", default="cpu", help="egr run --device (cpu, cuda, auto)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="egr-latency-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_HOME", str(tmp / "prefect-home"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    model = resolve_model(args.model, tmp)
    corpus = tmp / "corpus"
    _egr(["synth", str(corpus), "--docs", str(args.docs), "--seed", str(args.seed)], env)
    walls: dict[str, list[float]] = {"grounded": [], "plain": []}
    lat: dict[str, list[float]] = {"grounded": [], "plain": []}
    answers = 0
    for r in range(args.repeats):
        order = ("grounded", "plain") if r % 2 == 0 else ("plain", "grounded")
        for mode in order:
            out = tmp / f"{mode}-{r}"
            extra = ["--max-rounds", "0"] if mode == "plain" else []
            cmd = ["run", str(corpus), "--questions", str(corpus / "questions.yaml"),
                   "--out", str(out), "--model", model, "--device", args.device,
                   *extra]  # fmt: skip
            walls[mode].append(_egr(cmd, env))
            mean, answers = _latency(out)
            lat[mode].append(mean)
    med = statistics.median
    result = {
        "model": model,
        "docs": args.docs,
        "seed": args.seed,
        "answers": answers,
        "threads": args.threads,
        "device": args.device,
        "repeats": args.repeats,
        "latency_ms": {m: med(v) for m, v in lat.items()},
        "wall_s": {m: med(v) for m, v in walls.items()},
    }
    result["latency_ratio"] = result["latency_ms"]["grounded"] / result["latency_ms"]["plain"]
    result["wall_ratio"] = result["wall_s"]["grounded"] / result["wall_s"]["plain"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {model}; {args.docs} documents (seed {args.seed}), {answers} answers per run; "
          f"{args.threads} threads; median of {args.repeats}")  # fmt: skip
    for key, unit in (("latency", "ms"), ("wall", "s")):
        vals = result["latency_ms" if key == "latency" else "wall_s"]
        ratio, target = result[f"{key}_ratio"], TARGETS[key]
        verdict = "ok" if ratio <= target else "MISSED"
        print(
            f"{key:8s} grounded {vals['grounded']:8.1f} {unit}  plain {vals['plain']:8.1f} {unit}"
            f"  ratio {ratio:5.2f}  (target <= {target}: {verdict})"
        )


if __name__ == "__main__":
    main()
