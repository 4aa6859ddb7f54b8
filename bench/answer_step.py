"""Benchmark: the answer step scoring each view's own answer from its decoding vs teacher forcing.

Usage::

    .venv/bin/python bench/answer_step.py                  # shipped reader, 40 questions
    .venv/bin/python bench/answer_step.py --model DIR --seed 777 --questions 60

With ``read_scales`` the answer step reads the answering window at two (or more) scales and
scores every view's answer in every view. An adapter with ``batch_generate_scored`` returns each
greedy answer with its summed log-probability, so a view's own answer needs no teacher-forced
pass (when the decoded ids are the ids teacher forcing would score, i.e. the answer ended with
end-of-sequence). Printed: ms per grounded answer each way (one-page held-out questions, the
checkpoint's knobs; the two ways alternate over ``--repeats`` so background load hits both),
the ratio, and the teacher-forced passes each way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egr.reader import default_model_path, reader_config
from egr.reader.evaluate import PageCache, held_out_items
from egr_core.explain import EntropyGradientGrounding
from egr_core.loading import load_vlm
from egr_core.types import Question


class TeacherForced:
    """The adapter without ``batch_generate_scored``: every view's answer is teacher-forced."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "batch_generate_scored":
            raise AttributeError(name)
        return getattr(self._inner, name)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped reader)")
    ap.add_argument("--seed", type=int, default=777, help="held-out corpus seed")
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = args.model or default_model_path()
    vlm = load_vlm(model)
    cfg = reader_config(model)
    if not cfg.read_scales:
        sys.exit(f"{model}: its knobs read one view (no read_scales): nothing to compare")
    ways = {
        "scored decoding": EntropyGradientGrounding(vlm.model, vlm.processor, vlm.adapter, cfg),
        "teacher-forced": EntropyGradientGrounding(
            vlm.model, vlm.processor, TeacherForced(vlm.adapter), cfg
        ),
    }
    n_docs = max(4, args.questions // 3)
    items = [it for it in held_out_items(n_docs, args.seed) if it.doc.n_pages == 1]
    items = items[: args.questions]
    pages = PageCache()
    for it in items:  # render outside the timings
        pages.view(it.doc, it.page)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for rep in range(args.repeats):
        order = list(ways.items()) if rep % 2 == 0 else list(reversed(ways.items()))
        for name, egg in order:
            for it in items:
                t = time.perf_counter()
                egg.ground(
                    pages.view(it.doc, it.page),
                    [Question(it.question_id, it.question)],
                    crop_fn=pages.crop_fn(it.doc, it.page),
                    page_size_pt=it.doc.page_sizes_pt[it.page],
                )
                seconds[name].append(time.perf_counter() - t)
    ms = {name: 1000 * statistics.mean(v) for name, v in seconds.items()}
    for name, egg in ways.items():
        print(
            f"{name:16s} {ms[name]:6.0f} ms per grounded answer; teacher-forced passes "
            f"{egg.stats['answer_scorings']}, own answers scored as decoded "
            f"{egg.stats['answer_scores_from_decoding']} ({len(items)} questions x {args.repeats})"
        )
    ratio = ms["scored decoding"] / ms["teacher-forced"]
    print(f"ratio scored / teacher-forced: {ratio:.3f}")
    return {**ms, "ratio": ratio}


if __name__ == "__main__":
    main()
