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
         "--render-timeout", "7.5", "--render-memory-mb", "512", "--render-workers", "1",
         "--batch-size", "3", "--retry-budget", "2", "--gpu-slots", "2", "--slot-timeout", "9"],
    )  # fmt: skip
    assert isinstance(result.exception, _Stop), result.output
    p = seen["params"]
    assert p.overrides() == {"max_rounds": 2, "top_k": None, "stop_rule": "confidence",
                             "stop_tau": 0.3}  # fmt: skip
    assert (p.render_timeout_s, p.render_memory_mb, p.render_workers) == (7.5, 512, 1)
    assert (p.batch_size, p.retry_budget, p.gpu_slots, p.slot_timeout_s) == (3, 2, 2, 9.0)


def _failing_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception, *extra: str):
    import egr.commands.run
    import flows.corpus_qa
    import flows.ephemeral

    def fake_run(params, **kwargs):
        raise exc

    monkeypatch.setattr(flows.corpus_qa, "run_corpus_qa", fake_run)
    # the run itself fails, not its checks before Prefect starts (tests/cli/test_errors.py)
    monkeypatch.setattr(egr.commands.run, "preflight", lambda *a, **k: True)
    monkeypatch.setattr(flows.ephemeral, "start_ephemeral_server", lambda: None)
    questions = tmp_path / "q.yaml"
    questions.write_text("- id: total\n  text: What is the total?\n")
    args = ["run", "s3://bucket/in", "-q", str(questions), "-o", "s3://bucket/out", *extra]
    return CliRunner().invoke(app, args)


def test_an_unreachable_store_ends_in_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    exc = EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bucket")
    result = _failing_run(tmp_path, monkeypatch, exc)
    assert result.exit_code == 4  # the storage exit code (README: Errors and exit codes)
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: storage: EndpointConnectionError: Could not connect to the endpoint URL: "
        '"http://127.0.0.1:1/bucket"'
    )
    monkeypatch.setenv("EGR_DEBUG", "1")  # what --debug anywhere on the line sets
    result = _failing_run(tmp_path, monkeypatch, exc)
    assert result.exception is exc  # --debug lets it through, with its traceback


def test_a_slot_timeout_and_a_stop_end_in_one_line_with_their_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from egr_pipeline.slots import RunCancelled, SlotTimeout

    result = _failing_run(tmp_path, monkeypatch, SlotTimeout("run R: gave up after waiting 3 s"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "error: run R: gave up after waiting 3 s"
    result = _failing_run(tmp_path, monkeypatch, RunCancelled("run R: stopped by signal"))
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_unknown_stop_rule_is_refused_with_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(tmp_path), "-q", "q.yaml", "-o", "out", "--stop-rule", "sometimes"]
    )
    assert result.exit_code == 2
    assert "spatial_entropy" in result.output and "confidence" in result.output
