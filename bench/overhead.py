"""Prefect overhead: corpus-qa through the flow vs the same work in a plain Python loop.

    .venv/bin/python bench/overhead.py --docs 6 --max-rounds 1

Both paths use the same tiny model (loaded once, before timing), the same synthetic corpus and
the same io functions; each writes to its own fresh output root. Prints seconds per page of
each path and the ratio flow / loop. The flow's time excludes the embedded server's start-up
(a warm-up flow run happens first) but includes every API call of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def plain_loop(params, run_id: str) -> int:
    """The flow's data path without Prefect; returns pages processed."""
    from egr_pipeline import answering as A
    from egr_pipeline.models import load_model
    from egr_pipeline.plan import plan_run
    from egr_pipeline.rasterize import open_view, rasterize
    from egr_pipeline.store import Store

    run = plan_run(params.source, params.questions, params.model, params.out, None,
                   params.overrides(), run_id=run_id)  # fmt: skip
    store, pages = Store(params.out), 0
    egg = A.make_grounder(load_model(params.model, params.device, params.dtype), run.config)
    for item in run.todo:
        doc = rasterize(
            item, run.plan.workspace, max_pages=params.max_pages,
            max_side=params.render_max_side, max_pixels=params.render_max_pixels,
        )  # fmt: skip
        pages += len(doc.pages)
        if not doc.ok:
            store.write_group(run.ctx, A.failed_document_rows(run.ctx, doc))
            continue
        with open_view(doc) as view:
            ranked, _ = A.rank_all(egg, view, doc.questions, params.top_pages)
            results = []
            for page, qs in A.by_page(ranked, doc.questions).items():
                results += A.ground_page(egg, view, page, qs)
            store.write_group(run.ctx, A.document_rows(run.ctx, view, results, {}))
    return pages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=6)
    ap.add_argument("--max-rounds", type=int, default=1)
    ap.add_argument("--questions", type=int, default=2)
    ap.add_argument("--documents-per-task", type=int, default=None, help="default: the flow's")
    ap.add_argument("--device", default="cpu", help="the model's device (cpu, cuda)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from egr import synth
    from egr.tiny import build_tiny
    from egr_pipeline.models import load_model
    from flows.corpus_qa import run_corpus_qa
    from flows.params import RunParams

    tmp = Path(tempfile.mkdtemp(prefix="egr-bench-"))
    model = str(build_tiny("qwen2_5_vl", tmp / "model"))
    docs = tmp / "docs"
    docs.mkdir()
    for name, d in synth.generate_corpus(args.docs, seed=3, kinds=("invoice", "form", "table")):
        (docs / name).write_bytes(d.pdf)
    qs = synth.question_set(("invoice",))[: args.questions]
    (tmp / "q.json").write_text(json.dumps([{"id": q.question_id, "text": q.text} for q in qs]))

    def params(out: str) -> RunParams:
        return RunParams(source=str(docs), questions=str(tmp / "q.json"), out=str(tmp / out),
                         model=model, max_rounds=args.max_rounds, device=args.device,
                         documents_per_task=args.documents_per_task)  # fmt: skip

    load_model(model, args.device, "auto")  # both paths share the loaded model
    run_corpus_qa(params("warmup"))  # starts the embedded server; not timed

    t = time.perf_counter()
    pages = plain_loop(params("loop"), "bench-loop")
    loop_s = time.perf_counter() - t
    t = time.perf_counter()
    summary = run_corpus_qa(params("flow"))
    flow_s = time.perf_counter() - t
    if args.json:
        print(json.dumps({
            "docs": args.docs, "pages": pages, "items": summary.n_items,
            "max_rounds": args.max_rounds, "documents_per_task": args.documents_per_task,
            "loop_s_per_page": loop_s / pages,
            "flow_s_per_page": flow_s / summary.n_pages, "ratio": flow_s / loop_s,
        }, indent=2))  # fmt: skip
        return
    print(f"pages: {pages} (flow: {summary.n_pages}), items: {summary.n_items}")
    print(f"plain loop: {loop_s:.2f} s  ({loop_s / pages:.3f} s/page)")
    print(f"prefect flow: {flow_s:.2f} s  ({flow_s / summary.n_pages:.3f} s/page)")
    print(f"overhead ratio flow/loop: {flow_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
