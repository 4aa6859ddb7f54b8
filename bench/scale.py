"""Scale: peak memory and throughput of one corpus-qa run as the corpus grows.

    .venv/bin/python bench/scale.py --pages 100 1000 [--model tiny|reader|PATH] [--json]

For each page count, in a fresh process: draw synthetic documents (``egr synth``, all kinds)
until they hold that many pages, run the corpus-qa flow over them (``run_corpus_qa``, the path of
``egr run``; one question per document kind, EGG with the model's config) and report the run's
wall time, pages per minute, and the peak resident memory of the run's process and of its
children (the sandboxed render workers and Prefect's server), from ``getrusage``. Memory that
stays flat from 100 to 1,000 pages means nothing grows with the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _models import resolve_model

ROOT = Path(__file__).resolve().parents[1]


def one_run(pages: int, model: str, seed: int) -> dict:
    """The measured run (inside its own process)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import yaml

    from egr import synth
    from egr_core.documents import open_pdf
    from flows.corpus_qa import run_corpus_qa
    from flows.params import RunParams

    tmp = Path(tempfile.mkdtemp(prefix=f"egr-scale-{pages}-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect-home"))
    model = resolve_model(model, tmp)
    docs = tmp / "docs"
    docs.mkdir()
    have, n = 0, 0
    for name, doc in synth.generate_corpus(10**6, seed=seed):  # lazy: stops at the page count
        if have >= pages:
            break
        (docs / name).write_bytes(doc.pdf)
        with open_pdf(doc.pdf, name=name) as pdf:
            have += pdf.n_pages
        n += 1
    questions = []
    for kind in synth.KINDS:  # one question per kind, asked only of that kind
        q = next(q for q in synth.question_set((kind,)))
        questions.append({"id": q.question_id, "text": q.text, "documents": list(q.documents)})
    (tmp / "q.yaml").write_text(yaml.safe_dump(questions))
    params = RunParams(source=str(docs), questions=str(tmp / "q.yaml"), out=str(tmp / "out"),
                       model=model, max_pages=50)  # fmt: skip
    t = time.perf_counter()
    summary = run_corpus_qa(params)
    wall = time.perf_counter() - t
    kib = 1024.0
    return {
        "pages": summary.n_pages,
        "documents": n,
        "answers": summary.n_items,
        "model": model,
        "wall_s": wall,
        "pages_per_min": 60.0 * summary.n_pages / wall,
        "peak_rss_mb_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
        "peak_rss_mb_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: the measured process
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one, args.model, args.seed)))
        return
    results = []
    for pages in args.pages:
        cmd = [sys.executable, __file__, "--one", str(pages), "--model", args.model,
               "--seed", str(args.seed)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"run of {pages} pages failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model {results[0]['model']}; one corpus-qa run per size, in its own process")
    print(f"{'pages':>6} {'docs':>5} {'answers':>7} {'wall s':>8} {'pages/min':>9} "
          f"{'peak RSS MB':>11} {'children MB':>11}")  # fmt: skip
    for r in results:
        print(f"{r['pages']:6d} {r['documents']:5d} {r['answers']:7d} {r['wall_s']:8.1f} "
              f"{r['pages_per_min']:9.1f} {r['peak_rss_mb_self']:11.0f} "
              f"{r['peak_rss_mb_children']:11.0f}")  # fmt: skip
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last["peak_rss_mb_self"] / first["peak_rss_mb_self"]
        print(f"peak RSS at {last['pages']} / at {first['pages']} pages: {growth:.2f}")


if __name__ == "__main__":
    main()
