"""Rasterization: the pipeline's sandboxed render of a run vs raw PyMuPDF on the same pages.

    .venv/bin/python bench/raster.py [--docs 24] [--seed 7] [--repeats 3] [--json]

Draws ``--docs`` documents with ``egr synth``, plans a run over them and times
``egr_pipeline.rasterize.rasterize`` on every document (the flow's rasterize step: a warm pool of
sandboxed workers, each page rendered within the run's pixel budget and written for the answer
step) against ``pymupdf`` ``page.get_pixmap`` at the same resolution in this process (no
sandbox, nothing written). Prints pages per second of both and the ratio pipeline / raw
throughput (issue 14 target >= 0.9), median of ``--repeats`` interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import pymupdf

    from egr.reader import default_model_path
    from egr_pipeline.plan import plan_run
    from egr_pipeline.rasterize import RenderSpec, rasterize
    from egr_pipeline.sandbox import WorkerPool

    tmp = Path(tempfile.mkdtemp(prefix="egr-raster-"))
    corpus = tmp / "corpus"
    subprocess.run(
        [sys.executable, "-m", "egr", "synth", str(corpus), "--docs", str(args.docs),
         "--seed", str(args.seed)], check=True, capture_output=True,
    )  # fmt: skip
    spec = RenderSpec()
    run = plan_run(str(corpus), str(corpus / "questions.yaml"), default_model_path(),
                   str(tmp / "out"), run_id="bench-raster")  # fmt: skip
    items = list(run.todo)

    def pipeline(pool: WorkerPool, n: int) -> tuple[float, list]:
        t = time.perf_counter()
        docs = [
            rasterize(
                item,
                str(tmp / f"ws-{n}"),
                max_pages=spec.max_pages,
                max_side=spec.max_side,
                max_pixels=spec.max_pixels,
                pool=pool,
            )
            for item in items
        ]
        return time.perf_counter() - t, docs

    with WorkerPool(size=spec.workers, memory_mb=spec.memory_mb) as pool:
        _, docs = pipeline(pool, -1)  # warm-up: spawn and import in the workers
        pages = [(d.pdf_path, p.index, p.dpi) for d in docs for p in d.pages]

        def raw() -> float:
            t = time.perf_counter()
            current, doc = None, None
            for path, index, dpi in pages:
                if path != current:
                    if doc is not None:
                        doc.close()
                    current, doc = path, pymupdf.open(path)
                scale = dpi / 72.0
                doc[index].get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False)
            if doc is not None:
                doc.close()
            return time.perf_counter() - t

        times: dict[str, list[float]] = {"pipeline": [], "raw": []}
        for r in range(args.repeats):
            times["raw"].append(raw())
            times["pipeline"].append(pipeline(pool, r)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(pages)
    result = {
        "docs": len(items),
        "pages": n,
        "render_spec": {
            "max_side": spec.max_side,
            "max_pixels": spec.max_pixels,
            "workers": spec.workers,
        },
        "pipeline_pages_per_s": n / med["pipeline"],
        "raw_pages_per_s": n / med["raw"],
        "ratio": med["raw"] / med["pipeline"],
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    ok = "ok" if result["ratio"] >= TARGET else "MISSED"
    print(
        f"{len(items)} documents, {n} pages; budget {spec.max_side} px side, {spec.max_pixels} "
        f"px; {spec.workers} sandbox workers; median of {args.repeats}"
    )
    print(f"pipeline {result['pipeline_pages_per_s']:7.1f} pages/s   raw PyMuPDF "
          f"{result['raw_pages_per_s']:7.1f} pages/s   pipeline / raw {result['ratio']:.2f} "
          f"(target >= {TARGET}: {ok})")  # fmt: skip


if __name__ == "__main__":
    main()
