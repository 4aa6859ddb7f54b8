"""The answer step of the shipped reader: a view's own answer scored as it is decoded."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from egr.reader import default_model_path, reader_config
from egr.reader.evaluate import PageCache, held_out_items
from egr_core.explain import EntropyGradientGrounding
from egr_core.loading import load_vlm
from egr_core.types import Question


@pytest.fixture(scope="module")
def shipped() -> EntropyGradientGrounding:
    torch.set_num_threads(2)
    vlm = load_vlm(default_model_path())
    return EntropyGradientGrounding(vlm.model, vlm.processor, vlm.adapter, reader_config())


class _NoScoredDecoding:
    """An adapter without ``batch_generate_scored``: the answer step teacher-forces every view."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name == "batch_generate_scored":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_the_answer_step_scores_a_views_own_answer_from_its_decoding(shipped):
    """The shipped reader's answer step (the window alone at two scales): each view's own answer
    is scored as it was decoded, not by another teacher-forced pass, and the answers, the views'
    log-likelihoods and the kept answer are those of teacher forcing every view."""
    egg = shipped
    slow = EntropyGradientGrounding(
        egg.model, egg.processor, _NoScoredDecoding(egg.adapter), egg.config
    )
    items = [it for it in held_out_items(2, 777) if it.doc.n_pages == 1][:4]
    pages = PageCache()
    q = [Question(it.question_id, it.question) for it in items]
    got = {}
    for name, method in (("fast", egg), ("slow", slow)):
        before = Counter(method.stats)
        got[name] = [
            method.ground(pages.view(it.doc, it.page), [qq], crop_fn=pages.crop_fn(it.doc, it.page),
                          page_size_pt=it.doc.page_sizes_pt[it.page])[0]
            for it, qq in zip(items, q, strict=True)
        ]  # fmt: skip
        got[name + "_stats"] = Counter(method.stats) - before
    for a, b in zip(got["fast"], got["slow"], strict=True):
        assert a.answer == b.answer and len(a.extra["read_views"]) == 2
        va, vb = a.extra["read_views"], b.extra["read_views"]
        assert [v["answer"] for v in va] == [v["answer"] for v in vb]
        assert [v["logprob"] for v in va] == pytest.approx(
            [v["logprob"] for v in vb], rel=1e-4, abs=1e-3
        )
    own = got["fast_stats"]["answer_scores_from_decoding"]
    assert own == 2 * len(items)  # the reader ends its answers: both views' own ones are free
    assert got["fast_stats"]["answer_scorings"] + own == got["slow_stats"]["answer_scorings"]
