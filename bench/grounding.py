"""Benchmark: plain answer vs EGG, and 8 questions on one page vs 8 single-question runs.

Usage::

    .venv/bin/python bench/grounding.py                 # tiny random Qwen2.5-VL built offline
    .venv/bin/python bench/grounding.py --model reader  # the shipped reference reader
    .venv/bin/python bench/grounding.py --model PATH    # any supported checkpoint directory
    .venv/bin/python bench/grounding.py --toy           # the analytic toy VLM of tests/core

Printed numbers (wall clock, CPU unless --device says otherwise, ``--threads`` torch threads
(default 1), after a warm-up call of each mode; every timing is the median of ``--repeats`` runs,
and repeats interleave the modes so that background load hits them alike):
- plain ms/question and EGG ms/question (full loop: every mapping round + the answer), the mean
  time of one mapping round (prepare + encode new crops + forward + backward + regions);
- ratio EGG / plain per question, against the target 2.0;
- ratio (8 questions in one ``ground`` call) / (8 calls of one question each), plain and EGG,
  against the targets 0.20 (plain) and 0.35 (EGG). The saving comes from preprocessing and
  encoding the page (and shared crops) once per call, and from running every round of all the
  questions as one batch (one forward, one backward, one batched decode).

The method config is the checkpoint's own (its ``egr_config.json``, else the family's defaults),
as ``egr run`` uses it; ``--max-rounds`` overrides it.

Random tiny weights answer nonsense and generate ``--max-new-tokens`` tokens every time; the
numbers measure plumbing cost, not quality. For them the page pixel budget of the processor is
raised to ``--page-max-pixels`` so that the page view has a realistic share of the work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _models import resolve_model  # noqa: E402

from egr_core import EgrConfig, EntropyGradientGrounding  # noqa: E402

#: Targets (issue 14): EGG / plain per question, and one call for all questions / one per question.
EGG_OVER_PLAIN = 2.0
SHARED_OVER_SEPARATE = {"plain": 0.20, "egg": 0.35}
QUESTIONS = [
    "What is the invoice number?",
    "What is the total amount due?",
    "Who is the vendor?",
    "What is the due date?",
    "What is the tax rate?",
    "Which currency is used?",
    "What is the customer name?",
    "How many items are listed?",
]


def synthetic_page(width: int = 850, height: int = 1100, seed: int = 0) -> Image.Image:
    """A form-like page: a header, label/value lines, a table grid and a dark logo block."""
    page = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(page)
    d.rectangle((60, 50, 200, 120), fill=(30, 60, 120))
    d.text((240, 70), f"INVOICE No. {1000 + seed}", fill="black")
    for i, (k, v) in enumerate(
        [("Vendor", "ACME Corp"), ("Customer", "Jane Roe"), ("Due date", "2026-05-01"),
         ("Currency", "EUR"), ("Tax rate", "19%")]
    ):  # fmt: skip
        d.text((60, 180 + 30 * i), f"{k}:", fill="black")
        d.text((220, 180 + 30 * i), v, fill="black")
    for r in range(9):
        d.line((60, 400 + 40 * r, width - 60, 400 + 40 * r), fill=(120, 120, 120))
    for c in range(4):
        x = 60 + c * (width - 120) // 3
        d.line((x, 400, x, 720), fill=(120, 120, 120))
    d.text((width - 300, 780), "TOTAL DUE: 1,234.56", fill="black")
    return page


def load(args: argparse.Namespace):
    """(model, processor, adapter, label)."""
    if args.toy:
        sys.path.insert(0, str(ROOT / "tests" / "core"))
        from egg_toy import FakeProcessor, ToyAdapter, ToyVLM

        return ToyVLM(), FakeProcessor(), ToyAdapter(), "toy"
    from egr_core.loading import load_vlm

    path = resolve_model(args.model or "tiny", Path(tempfile.mkdtemp(prefix="egr-bench-")))
    args.model_path = path
    vlm = load_vlm(path, device=args.device, dtype="float32")
    size = getattr(getattr(vlm.processor, "image_processor", None), "size", None)
    if args.model is None and vlm.model_type.startswith("qwen") and size is not None:
        if isinstance(size, dict):
            size["longest_edge"] = args.page_max_pixels  # Qwen: longest_edge is max_pixels
        else:  # transformers' SizeDict
            size.longest_edge = args.page_max_pixels
    return vlm.model, vlm.processor, vlm.adapter, f"{vlm.model_type} ({path})"


def timed_ground(model, processor, adapter, cfg, page, page_pt, questions):
    egg = EntropyGradientGrounding(model, processor, adapter, cfg)
    t = time.perf_counter()
    answers = egg.ground(page, questions, page_size_pt=page_pt)
    return (time.perf_counter() - t) * 1000.0, answers, egg


def measure(model, processor, adapter, plain, egg_cfg, page, page_pt, repeats):
    """Median wall times (ms) of: each question alone (plain, EGG) and all of them in one call."""
    single: dict[tuple[str, str], list[float]] = {}
    shared: dict[str, list[float]] = {"plain": [], "egg": []}
    last: dict[str, object] = {}
    for _ in range(repeats):
        for q in QUESTIONS:
            for mode, cfg in (("plain", plain), ("egg", egg_cfg)):
                ms, (ans,), _ = timed_ground(model, processor, adapter, cfg, page, page_pt, [q])
                single.setdefault((mode, q), []).append(ms)
                last[f"{mode}:{q}"] = ans
        for mode, cfg in (("plain", plain), ("egg", egg_cfg)):
            ms, _, egg = timed_ground(model, processor, adapter, cfg, page, page_pt, QUESTIONS)
            shared[mode].append(ms)
            last[f"stats:{mode}"] = egg.stats
    med = statistics.median
    return (
        {k: med(v) for k, v in single.items()},
        {k: med(v) for k, v in shared.items()},
        last,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint dir (default: build tiny Qwen2.5-VL)")
    ap.add_argument("--toy", action="store_true", help="use the analytic toy VLM")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-rounds", type=int, default=None, help="override (default: the model's own config)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument(
        "--dpi", type=float, default=100.0, help="the page image's resolution (legible crops)"
    )
    ap.add_argument("--page-max-pixels", type=int, default=1024 * 28 * 28)
    ap.add_argument("--crop-pixels", type=int, default=448)
    ap.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, processor, adapter, label = load(args)
    page = synthetic_page()
    page_pt = (page.width * 72 / args.dpi, page.height * 72 / args.dpi)
    if args.toy:
        base = dict(getattr(adapter, "config_defaults", {}) or {})
    else:  # the config a run of this checkpoint uses (its egr_config.json, else the family's)
        from egr_core.loading import default_config

        base = default_config(adapter, args.model_path).to_dict()
        if args.model is None:  # random tiny weights: a fixed crop size keeps runs comparable
            base["crop_pixels"] = args.crop_pixels
    base["max_new_tokens"] = args.max_new_tokens
    if args.max_rounds is not None:
        base["max_rounds"] = args.max_rounds
        base["min_rounds"] = min(base.get("min_rounds", 0), args.max_rounds)
    plain = EgrConfig(**{**base, "max_rounds": 0, "min_rounds": 0})
    egg_cfg = EgrConfig(**base)
    for cfg in (plain, egg_cfg):  # warm-up: lazy init, allocator, transformers' hooks
        timed_ground(model, processor, adapter, cfg, page, page_pt, QUESTIONS[:2])
    single, shared, last = measure(
        model, processor, adapter, plain, egg_cfg, page, page_pt, args.repeats
    )

    plain_ms = [single[("plain", q)] for q in QUESTIONS]
    egg_ms = [single[("egg", q)] for q in QUESTIONS]
    answers = [last[f"egg:{q}"] for q in QUESTIONS]
    rounds_run = [len(a.rounds) for a in answers]
    ratios = [(e / p, EGG_OVER_PLAIN) for e, p in zip(egg_ms, plain_ms, strict=True)]
    round_ms = [sum(r.timings_ms.values()) for a in answers for r in a.rounds]
    shared_plain, shared_egg = shared["plain"], shared["egg"]
    result = {
        "model": label,
        "page_px": list(page.size),
        "threads": args.threads,
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "plain_ms_per_question": statistics.mean(plain_ms),
        "egg_ms_per_question": statistics.mean(egg_ms),
        "mapping_rounds_mean": statistics.mean(rounds_run),
        "round_ms_mean": statistics.mean(round_ms),
        "egg_over_plain_worst": max(r for r, _ in ratios),
        "egg_over_plain_target_ok": all(r <= t for r, t in ratios),
        "egg_over_plain": [[round(r, 2), t] for r, t in ratios],
        "shared_over_separate_plain": shared_plain / sum(plain_ms),
        "shared_over_separate_egg": shared_egg / sum(egg_ms),
        "shared_plain_ms": shared_plain,
        "shared_egg_ms": shared_egg,
        "separate_plain_ms": sum(plain_ms),
        "separate_egg_ms": sum(egg_ms),
        "shared_egg_stats": dict(last["stats:egg"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"model: {label}; page {page.size[0]}x{page.size[1]} px; threads {args.threads}; "
        f"median of {args.repeats} runs"
    )
    print(f"plain answer        {result['plain_ms_per_question']:8.1f} ms/question")
    print(
        f"EGG full loop       {result['egg_ms_per_question']:8.1f} ms/question "
        f"({result['mapping_rounds_mean']:.2f} mapping rounds, "
        f"{result['round_ms_mean']:.1f} ms/round)"
    )
    print(f"EGG / plain per question (ratio, target <= {EGG_OVER_PLAIN}):")
    for q, (r, t) in zip(QUESTIONS, ratios, strict=True):
        print(f"  {r:5.2f}  <= {t:4.1f}  {'ok' if r <= t else 'MISSED'}  {q}")
    n = len(QUESTIONS)
    for mode in ("plain", "egg"):
        r, target = result[f"shared_over_separate_{mode}"], SHARED_OVER_SEPARATE[mode]
        print(
            f"{n} questions on one page / {n} separate runs ({mode:5s}): "
            f"{result[f'shared_{mode}_ms']:8.1f} / {result[f'separate_{mode}_ms']:8.1f} ms = "
            f"{r:.2f} (target <= {target:.2f}: {'ok' if r <= target else 'MISSED'})"
        )
    print(f"shared EGG call stats: {result['shared_egg_stats']}")


if __name__ == "__main__":
    main()
