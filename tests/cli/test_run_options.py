"""`egr run` hands every knob it shows in --help to the flow's RunParams."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from egr.cli import app


class _Stop(Exception):
    pass


def test_run_options_reach_the_run_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pymupdf

    import flows.corpus_qa
    import flows.ephemeral

    seen = {}

    def fake_run(params, **kwargs):
        seen["params"] = params
        raise _Stop

    monkeypatch.setattr(flows.corpus_qa, "run_corpus_qa", fake_run)
    monkeypatch.setattr(flows.ephemeral, "start_ephemeral_server", lambda: None)
    with pymupdf.open() as pdf:
        pdf.new_page()
        pdf.save(tmp_path / "one.pdf")
    questions = tmp_path / "q.yaml"
    questions.write_text("- id: total\n  text: What is the total?\n")
    result = CliRunner().invoke(
        app,
        ["run", str(tmp_path), "-q", str(questions), "-o", str(tmp_path / "out"),
         "--stop-rule", "confidence", "--stop-tau", "0.3", "--max-rounds", "2",
         "--render-timeout", "7.5", "--render-memory-mb", "512", "--render-workers", "1"],
    )  # fmt: skip
    assert isinstance(result.exception, _Stop), result.output
    p = seen["params"]
    assert p.overrides() == {"max_rounds": 2, "top_k": None, "stop_rule": "confidence",
                             "stop_tau": 0.3}  # fmt: skip
    assert (p.render_timeout_s, p.render_memory_mb, p.render_workers) == (7.5, 512, 1)


def test_unknown_stop_rule_is_refused_with_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(tmp_path), "-q", "q.yaml", "-o", "out", "--stop-rule", "sometimes"]
    )
    assert result.exit_code == 2
    assert "spatial_entropy" in result.output and "confidence" in result.output
