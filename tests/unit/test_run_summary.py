"""The run summary's counts."""

from __future__ import annotations

from egr_pipeline.summary import DocOutcome, RunSummary, is_unsure


def test_unsure_is_an_unlikely_answer_or_an_unsure_first_token() -> None:
    assert not is_unsure({"answer_logprob": -0.2, "entropy_after": 0.1})
    assert is_unsure({"answer_logprob": -3.0, "entropy_after": 0.1})  # sure first token
    assert is_unsure({"answer_logprob": None, "entropy_after": 1.7})  # read once
    assert not is_unsure({"answer_logprob": None, "entropy_after": 0.3})
    assert not is_unsure({"answer_logprob": None, "entropy_after": None})  # failed item


def test_the_headline_and_counts_carry_the_unsure_answers() -> None:
    doc = DocOutcome("/in/a.pdf", "ok", 2, {"ok": 5, "failed": 1}, unsure=2)
    summary = RunSummary("r", "out", "m", "c", 1, 0, (doc, doc), 1.0)
    assert summary.n_unsure == 4 and summary.counts()["unsure_items"] == 4
    assert "4 unsure" in summary.headline()
