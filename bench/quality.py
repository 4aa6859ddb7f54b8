"""Grounding-quality benchmark of the reference reader on held-out synthetic documents.

Usage::

    .venv/bin/python bench/quality.py                      # shipped reader, 12 documents
    .venv/bin/python bench/quality.py --docs 24 --model runs/r1/model --json out.json

Held-out documents: ``egr_core.synth.generate_corpus(--docs, --seed)`` (corpus seeds; checked
disjoint from the reader's training seeds). Every question of each document's kind is asked about
the page that holds its answer; the page view is the pipeline's (render at up to 2 Mpx, the
processor downsizes to the reader's budget), crops are lossless re-renders of the PDF.

Rows: plain full-page answer; EGG (full loop, spatial-entropy stop, cap 3); EGG with 1 and with 3
fixed rounds; EGG with a first-token-confidence stop (zoom while entropy > --tau nats, cap 3); the
oracle crop (the true answer box padded like an EGG crop, fed as ``[page, crop]``). Every EGG row
is ``EntropyGradientGrounding.ground`` with one knob changed (``stop_rule``, ``max_rounds``).
Columns: exact match, character accuracy (1 - edit distance / answer length: near misses score
high), exact match on small-print fields, top-1 evidence box holding >= 90% of the
answer box's area, mapping rounds per question (forward + backward passes), wall-clock cost per
question relative to the plain answer, and exact-match points per unit of that cost.
A last line reports crop reading (the oracle crop alone, no page) and the share of the
plain-to-oracle gap that EGG closes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egr.reader import default_model_path, reader_config  # noqa: E402
from egr.reader.evaluate import (  # noqa: E402
    PageCache,
    box_holds,
    char_accuracy,
    check_disjoint,
    held_out_items,
    run_egg,
    run_oracle,
    run_plain,
)
from egr_core.explain import EntropyGradientGrounding  # noqa: E402
from egr_core.loading import load_vlm  # noqa: E402

#: Default evaluation corpus seed (the demo corpus uses its own; training seeds never overlap).
EVAL_SEED = 20260


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="reader checkpoint (default: the shipped one)")
    ap.add_argument("--docs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--tau", type=float, default=0.5, help="confidence stop (nats)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model_dir = args.model or default_model_path()
    vlm = load_vlm(model_dir)
    cfg = reader_config(model_dir)
    egg = EntropyGradientGrounding(vlm.model, vlm.processor, vlm.adapter, cfg)
    items = held_out_items(args.docs, args.seed)
    check_disjoint(items, args.train_seed)
    pages = PageCache()

    cap = cfg.max_rounds
    strategies = {
        "plain (page only)": lambda it: run_plain(egg, pages, it),
        f"EGG (SE stop, cap {cap})": lambda it: run_egg(egg, pages, it),
        "EGG (1 fixed round)": lambda it: run_egg(egg, pages, it, stop_rule="fixed", max_rounds=1),
        f"EGG ({cap} fixed rounds)": lambda it: run_egg(egg, pages, it, stop_rule="fixed"),
        f"EGG (entropy <= {args.tau:g} stop, cap {cap})": lambda it: run_egg(
            egg, pages, it, stop_rule="confidence", stop_tau=args.tau
        ),
        "oracle crop": lambda it: run_oracle(egg, pages, it),
    }
    for it in items[:2]:  # warm-up: caches, page renders, first-call overheads
        pages.page(it)
        run_plain(egg, pages, it)
    results: dict[str, dict[str, float]] = {}
    for name, fn in strategies.items():
        outs = [fn(it) for it in items]
        boxes = [o.top_box for o in outs]
        results[name] = {
            "exact_match": statistics.mean(o.correct for o in outs),
            "char_accuracy": statistics.mean(
                char_accuracy(o.answer, it.answer) for o, it in zip(outs, items, strict=True)
            ),
            "top1_box_holds_answer": (
                statistics.mean(
                    b is not None and box_holds(b, it.box)
                    for b, it in zip(boxes, items, strict=True)
                )
                if any(b is not None for b in boxes)
                else float("nan")
            ),
            "rounds": statistics.mean(o.rounds for o in outs),
            "seconds": statistics.mean(o.seconds for o in outs),
            "small_print_em": _mean(
                [o.correct for o, it in zip(outs, items, strict=True) if it.small_print]
            ),
        }
        print(f"  {name}: done ({results[name]['exact_match']:.3f})", file=sys.stderr, flush=True)
    crop_only = [run_oracle(egg, pages, it, with_page=False) for it in items]
    base = results["plain (page only)"]["seconds"]
    for r in results.values():
        r["cost_vs_plain"] = r["seconds"] / base
        r["em_per_cost"] = r["exact_match"] / r["cost_vs_plain"]
    plain = results["plain (page only)"]["exact_match"]
    oracle = results["oracle crop"]["exact_match"]
    egg_em = results[f"EGG (SE stop, cap {cap})"]["exact_match"]
    gap = (egg_em - plain) / (oracle - plain) if oracle > plain else float("nan")
    summary = {
        "questions": len(items),
        "documents": args.docs,
        "crop_reading_em": statistics.mean(o.correct for o in crop_only),
        "crop_reading_chars": statistics.mean(
            char_accuracy(o.answer, it.answer) for o, it in zip(crop_only, items, strict=True)
        ),
        "gap_closed_by_egg": gap,
        "model": model_dir,
        "config": cfg.to_dict(),
    }
    print(table(results))
    print(
        f"\n{len(items)} questions on {args.docs} held-out documents (seed {args.seed}); "
        f"crop reading (oracle crop alone): {summary['crop_reading_em']:.1%} exact, "
        f"{summary['crop_reading_chars']:.1%} of characters; "
        f"EGG closes {gap:.0%} of the plain-to-oracle gap."
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": results, "summary": summary}, indent=2))
    return results


def _mean(xs: list[bool]) -> float:
    return statistics.mean(xs) if xs else float("nan")


def table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of the rows (the README and the note use it verbatim)."""
    head = (
        "| method | exact match | char accuracy | small-print EM | top-1 box holds answer "
        "| rounds | cost vs plain | EM per cost |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        box = (
            "n/a"
            if r["top1_box_holds_answer"] != r["top1_box_holds_answer"]
            else (f"{r['top1_box_holds_answer']:.1%}")
        )
        lines.append(
            f"| {name} | {r['exact_match']:.1%} | {r['char_accuracy']:.1%} | "
            f"{r['small_print_em']:.1%} | {box} | "
            f"{r['rounds']:.2f} | {r['cost_vs_plain']:.2f}x | {r['em_per_cost']:.1%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
