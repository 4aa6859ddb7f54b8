"""EGG's answer step when it reads the answering crops again (``EgrConfig.answer_page`` and
``read_scales``; docs/reader.md "The answer step").

The zoom loop ends with a round whose prompt is ``[page view, crops]``; by default (the paper)
that prompt's greedy answer is the answer. With ``answer_page`` off the crops are read alone, in
a prompt of their own; with ``read_scales`` they are also re-cut around the same regions and
peaks at multiples of the legible scale. Each view is read greedily, and with several views every
view's answer is scored in every view by teacher forcing (``adapter.answer_logprob``): the highest
summed log-likelihood is the answer. A view's own answer is scored as it is decoded when the
adapter can (``batch_generate_scored``), so views that agree cost no teacher-forced pass.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import torch

from egr_core.imaging import crops_of_regions
from egr_core.rounds import Ask, PageCall, RoundData, RoundRunner, ms
from egr_core.types import Box, Question, Region


class AnswerStep:
    """The answer step's own reads with the model, adapter and config of ``steps`` (owned by the
    method object; ``stats`` are its counters: reread_views, answer_scorings (teacher-forced
    passes), answer_scores_from_decoding (a view's own answer, scored as it was decoded))."""

    def __init__(self, steps: RoundRunner, stats: Counter[str]) -> None:
        adapter = steps.adapter
        if steps.config.read_scales and not hasattr(adapter, "answer_logprob"):
            raise ValueError(
                f"read_scales needs an adapter that scores answers (answer_logprob); "
                f"{type(adapter).__name__} has none"
            )
        self.model, self.processor, self.adapter = steps.model, steps.processor, adapter
        self.config, self.steps, self.stats = steps.config, steps, stats

    @property
    def active(self) -> bool:
        """Whether the answering crops are read again (crops alone, more scales)."""
        return bool(self.config.read_scales) or not self.config.answer_page

    def read(
        self,
        call: PageCall,
        q: Question,
        crops: tuple[Box, ...],
        sources: dict[Box, Region],
        base: RoundData | None,
        answer: str | None,
    ) -> tuple[str, float, list[dict[str, Any]]]:
        """The answer step's own reads of the answering ``crops``: without the page view when
        ``answer_page`` is off, and at every multiple of the legible scale in ``read_scales``
        (the crops re-cut around the same regions and peaks). Each view is read greedily; with
        several views every view's answer is a candidate, scored by its log-likelihood summed
        over all views. ``base``/``answer``: the answering round's prompt and answer, which is
        the legible scale's view when the page view is read.

        Returns the best candidate (ties: the legible scale's answer), the milliseconds spent
        and the views (scale, answer, and that answer's summed log-likelihood; None when there
        is one view, which is read but not scored).
        """
        t = time.perf_counter()
        cfg = self.config
        aspect = call.page.width / call.page.height
        regions_read = list(dict.fromkeys(sources[b] for b in crops))
        views: list[tuple[float, RoundData]] = []
        texts: list[str] = []
        if cfg.answer_page and base is not None and answer is not None:
            views, texts = [(1.0, base)], [answer]
        scales = ([] if views else [1.0]) + list(cfg.read_scales)
        for scale in scales:
            view_cfg = cfg
            boxes = list(crops)
            if scale != 1.0:
                assert cfg.legible_scale is not None  # EgrConfig: read_scales needs it
                view_cfg = cfg.replace(legible_scale=cfg.legible_scale * scale)
                boxes = list(crops_of_regions(regions_read, view_cfg, call.page_pt, aspect))
            prep, embeds, timings = self.steps.inputs(
                call, Ask(q, tuple(boxes[: len(crops)]), 1), view_cfg, with_page=cfg.answer_page
            )
            views.append((scale, RoundData(prep, embeds, float("nan"), (), timings)))
        own = self._read(views, texts)  # (view, its answer) -> log-likelihood from decoding
        self.stats["reread_views"] += len(views) - (1 if cfg.answer_page else 0)
        totals = {c: 0.0 for c in texts}  # insertion order: the legible scale's answer first
        if len(views) > 1:
            for c in totals:
                ids = None
                for v, (_, d) in enumerate(views):
                    if (v, c) in own:
                        totals[c] += own[(v, c)]
                        self.stats["answer_scores_from_decoding"] += 1
                        continue
                    ids = self.answer_ids(c) if ids is None else ids
                    totals[c] += self.adapter.answer_logprob(  # type: ignore[attr-defined]
                        self.model, d.prepared, d.embeds, ids
                    )
                    self.stats["answer_scorings"] += 1
        best = max(totals, key=lambda c: totals[c])  # first of equals: dict order
        scored = len(views) > 1
        described = [
            {
                "scale": sc, "page": cfg.answer_page, "answer": a,
                "logprob": round(totals[a], 4) if scored else None,
            }
            for (sc, _), a in zip(views, texts, strict=True)
        ]  # fmt: skip
        return best, ms(t), described

    def _read(
        self, views: list[tuple[float, RoundData]], texts: list[str]
    ) -> dict[tuple[int, str], float]:
        """Greedy answers of the views after the first ``len(texts)`` (appended to ``texts``).
        When the adapter scores its own decoding, each view's log-likelihood of its own answer
        comes with it: returned by (view index, answer) when the decoded ids are the ids
        teacher forcing would score (:meth:`answer_ids`), so that pass is skipped."""
        start = len(texts)
        fresh = [d for _, d in views[start:]]
        decoded = self.steps.generate_scored(fresh)
        if decoded is None:
            texts += [a for a, _ in self.steps.generate(fresh)]
            return {}
        own: dict[tuple[int, str], float] = {}
        for v, d in enumerate(decoded, start=start):
            texts.append(d.text)
            try:
                same = tuple(self.answer_ids(d.text).tolist()) == tuple(d.ids)
            except ValueError:  # an empty answer with no end-of-sequence token
                same = False
            if same:
                own[(v, d.text)] = d.logprob
        return own

    def answer_ids(self, text: str) -> torch.Tensor:
        """Token ids (n,) of an answer as the model would end it: the text, then end-of-sequence."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        eos: Any = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        if eos is not None:
            ids.append(int(eos))
        if not ids:
            raise ValueError("an empty answer with no end-of-sequence token cannot be scored")
        return torch.tensor(ids, dtype=torch.long)
