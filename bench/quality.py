"""Grounding-quality benchmark on held-out synthetic documents with jittered layouts.

Usage::

    .venv/bin/python bench/quality.py                          # shipped reader, seed 4242
    .venv/bin/python bench/quality.py --seed 5150 --docs 40 --json out.json
    .venv/bin/python bench/quality.py --model runs/r2/model --knob max_rounds=2

Held-out documents: ``egr.synth.generate_corpus(--docs, --seed)`` with jittered layouts
(checked disjoint from the reader's training seeds). Knobs are tuned on the development seed
31337 only; report other seeds. Every question of each document's kind is asked the way the
pipeline asks it: on a multi-page document the ``--top-pages`` pages of lowest first-answer-token
entropy are grounded and the answer whose first token is surest after zooming is kept (as
``egr run --top-pages``; the "answer from its page" column says how often that answer came from
the answer's page), the page view is the pipeline's render, crops are lossless re-renders of the
PDF.

Rows: plain (page view only); EGG with the model's knobs; EGG with each stop rule; a no-model
layout prior (the field's usual position, learnt from training-namespace documents, cut with
EGG's crop rule and read by the model); the oracle crop (EGG's crop rule around the true answer
box). Columns, each with a 95% interval: exact match; character accuracy; page-map pointing (the
page view map's strongest cell touches the answer); answering crop holds the whole answer (the
crop the answer was read from, rank-1 evidence); mapping rounds; answer from its page
(multi-page documents); wall-clock cost per question vs plain. The last lines give crop reading
(oracle crop alone) and the share of the plain-to-oracle gap EGG closes, with a bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egr.reader import default_model_path, reader_config  # noqa: E402
from egr.reader.evaluate import (  # noqa: E402
    Item,
    LayoutPrior,
    Outcome,
    PageCache,
    bootstrap,
    check_disjoint,
    choose_page,
    held_out_items,
    mean_interval,
    run_egg,
    run_oracle,
    run_plain,
    run_prior,
    wilson,
)
from egr_core.explain import EntropyGradientGrounding  # noqa: E402
from egr_core.loading import load_vlm  # noqa: E402

#: The development seed: knobs are chosen on it. Report any other seed.
DEV_SEED = 31337
#: Default evaluation seed (held out: never used for tuning).
EVAL_SEED = 4242
PLAIN, EGG, PRIOR, ORACLE = "plain (page only)", "EGG", "layout prior (no model)", "oracle crop"


def _parse_knob(text: str) -> tuple[str, Any]:
    key, _, raw = text.partition("=")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="reader checkpoint (default: the shipped one)")
    ap.add_argument("--docs", type=int, default=32, help="documents (about 4.5 questions each)")
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--knob", action="append", default=[], help="override an EGG knob: k=v")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="all", help="comma list: plain,egg,rules,prior,oracle")
    ap.add_argument(
        "--top-pages", type=int, default=3,
        help="multi-page documents: pages grounded per question, as egr run --top-pages",
    )  # fmt: skip
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model_dir = args.model or default_model_path()
    vlm = load_vlm(model_dir)
    cfg = reader_config(model_dir, **dict(_parse_knob(k) for k in args.knob))
    egg = EntropyGradientGrounding(vlm.model, vlm.processor, vlm.adapter, cfg)
    items = held_out_items(args.docs, args.seed)
    check_disjoint(items, args.train_seed)
    if args.seed == DEV_SEED:
        print(f"note: seed {DEV_SEED} is the development seed (knobs are tuned on it)")
    pages = PageCache()
    wanted = set(args.rows.split(",")) if args.rows != "all" else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    choices = []
    for i, it in enumerate(items):
        choices.append(choose_page(egg, pages, it, args.top_pages))
        pages.view(it.doc, it.page)
        if i % 20 == 0:
            progress(f"  page choice {i + 1}/{len(items)}")
    run_plain(egg, pages, items[0], choices[0])  # warm-up

    outs: dict[str, list[Outcome]] = {}

    def run(name: str, fn: Callable[[Item, Any], Outcome]) -> None:
        res = []
        for i, (it, ch) in enumerate(zip(items, choices, strict=True)):
            res.append(fn(it, ch))
            if (i + 1) % 25 == 0:
                progress(f"  {name}: {i + 1}/{len(items)}")
        outs[name] = res
        progress(f"  {name}: done, exact {statistics.mean(o.correct for o in res):.1%}")

    run(PLAIN, lambda it, ch: run_plain(egg, pages, it, ch))
    run(EGG, lambda it, ch: run_egg(egg, pages, it, ch))
    if want("rules"):
        cap = max(cfg.max_rounds, 2)
        for rule in ("spatial_entropy", "fixed", "confidence"):
            run(
                f"EGG, {rule} stop (cap {cap}, min 0)",
                lambda it, ch, r=rule: run_egg(
                    egg, pages, it, ch, stop_rule=r, max_rounds=cap, min_rounds=0
                ),
            )
    if want("prior"):
        prior = LayoutPrior()
        grids = {id(it): o.grid for it, o in zip(items, outs[EGG], strict=True)}
        run(PRIOR, lambda it, ch: run_prior(egg, pages, it, prior, grids[id(it)] or (19, 15)))
    run(ORACLE, lambda it, ch: run_oracle(egg, pages, it))
    crop_only = [run_oracle(egg, pages, it, with_page=False) for it in items]

    base = statistics.mean(o.seconds for o in outs[PLAIN])
    rows = {name: summarise(res, base) for name, res in outs.items()}
    gap, gap_ci = gap_closed(outs[PLAIN], outs[EGG], outs[ORACLE])
    summary = {
        "questions": len(items),
        "documents": args.docs,
        "multi_page_questions": sum(1 for it in items if it.doc.n_pages > 1),
        "seed": args.seed,
        "crop_reading_em": statistics.mean(o.correct for o in crop_only),
        "crop_reading_em_ci": wilson(sum(o.correct for o in crop_only), len(crop_only)),
        "crop_reading_chars": statistics.mean(o.chars for o in crop_only),
        "gap_closed_by_egg": gap,
        "gap_closed_ci": gap_ci,
        "model": model_dir,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
    }
    print(table(rows))
    lo, hi = summary["crop_reading_em_ci"]
    print(
        f"\n{len(items)} questions on {args.docs} held-out documents (seed {args.seed}, "
        f"{summary['multi_page_questions']} on multi-page documents); intervals are 95%.\n"
        f"crop reading (oracle crop alone): {summary['crop_reading_em']:.1%} exact "
        f"[{lo:.1%}, {hi:.1%}], {summary['crop_reading_chars']:.1%} of characters.\n"
        f"EGG closes {gap:.0%} [{gap_ci[0]:.0%}, {gap_ci[1]:.0%}] of the plain-to-oracle gap."
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return {"rows": rows, "summary": summary}


def _rate(xs: list[bool | None]) -> dict[str, Any] | None:
    got = [bool(x) for x in xs if x is not None]
    if not got:
        return None
    return {"value": statistics.mean(got), "ci": wilson(sum(got), len(got)), "n": len(got)}


def summarise(res: list[Outcome], base_seconds: float) -> dict[str, Any]:
    cost = [o.seconds / base_seconds for o in res]
    return {
        "exact_match": _rate([o.correct for o in res]),
        "char_accuracy": {
            "value": statistics.mean(o.chars for o in res),
            "ci": mean_interval([o.chars for o in res]),
        },
        "pointing": _rate([o.pointing for o in res]),
        "crop_holds_answer": _rate([o.crop_holds for o in res]),
        "page_hit": _rate([o.page_hit for o in res]),
        "rounds": statistics.mean(o.rounds for o in res),
        "cost_vs_plain": {"value": statistics.mean(cost), "ci": mean_interval(cost)},
    }


def gap_closed(
    plain: list[Outcome], egg: list[Outcome], oracle: list[Outcome]
) -> tuple[float, tuple[float, float]]:
    """(EGG - plain) / (oracle - plain) in exact match, with a bootstrap interval over items."""
    p, e, o = (np.array([x.correct for x in xs], dtype=float) for xs in (plain, egg, oracle))

    def stat(idx: np.ndarray) -> float:
        d = o[idx].mean() - p[idx].mean()
        return float((e[idx].mean() - p[idx].mean()) / d) if d > 0 else math.nan

    return stat(np.arange(len(p))), bootstrap(stat, len(p))


def _cell(r: dict[str, Any] | None, fmt: str = "{:.1%}") -> str:
    if r is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{fmt.format(r['value'])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the rows (the README and the notes use it verbatim)."""
    head = (
        "| method | exact match | char accuracy | page-map pointing | answering crop holds "
        "answer | rounds | answer from its page | cost vs plain |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {_cell(r['exact_match'])} | {_cell(r['char_accuracy'])} | "
            f"{_cell(r['pointing'])} | {_cell(r['crop_holds_answer'])} | {r['rounds']:.2f} | "
            f"{_cell(r['page_hit'])} | {_cell(r['cost_vs_plain'], '{:.2f}x')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
