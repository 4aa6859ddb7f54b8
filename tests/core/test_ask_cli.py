"""``egr ask`` end to end on a tiny random Qwen2.5-VL checkpoint and a two-page PDF."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from egr.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from egr.tiny import build_tiny

    torch.set_num_threads(1)
    return build_tiny("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "two.pdf"
    doc = pymupdf.open()
    for i in range(2):
        page = doc.new_page(width=612, height=792)
        page.insert_text((72, 100), f"Invoice number: INV-{1000 + i}", fontsize=14)
        page.insert_text((72, 400), "Total due: 1,234.56 EUR", fontsize=12)
    doc.save(path)
    return path


def test_ask_json_ranks_pages_and_reports_rounds(tiny_qwen: Path, pdf: Path) -> None:
    args = ["ask", str(pdf), "What is the total?", "--model", str(tiny_qwen), "--json"]
    res = CliRunner().invoke(app, [*args, "--max-rounds", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert [r["page"] for r in out["page_ranking"]] and out["page"] == out["page_ranking"][0][
        "page"
    ]
    assert out["stop_reason"] in ("se_increase", "max_rounds", "no_region")
    assert 1 <= len(out["rounds"]) <= 2 and out["model_type"] == "qwen2_5_vl"
    for ev in out["evidence"]:
        x0, y0, x1, y1 = ev["box_pt"]
        assert 0 <= x0 < x1 <= 612 and 0 <= y0 < y1 <= 792
        assert isinstance(ev["text"], str)


def test_ask_with_page_and_plain_mode(tiny_qwen: Path, pdf: Path) -> None:
    args = ["ask", str(pdf), "What?", "--model", str(tiny_qwen), "--page", "1", "--json"]
    res = CliRunner().invoke(app, [*args, "--max-rounds", "0"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert out["page"] == 1 and out["page_ranking"] == [] and out["stop_reason"] == "plain"


def test_ask_defaults_to_the_shipped_reader(
    pdf: Path, tiny_qwen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import egr.reader

    monkeypatch.setattr(egr.reader, "default_model_path", lambda: str(tiny_qwen))
    res = CliRunner().invoke(app, ["ask", str(pdf), "What?", "--page", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["model_id"] == str(tiny_qwen)


def test_ask_errors(pdf: Path, tiny_qwen: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["ask", str(pdf), "What?", "-m", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no such checkpoint directory" in res.output  # as egr run
    res = CliRunner().invoke(app, ["ask", str(pdf), "What?", "-m", str(tiny_qwen), "--page", "7"])
    assert res.exit_code == 2 and "out of range" in res.output


def test_ask_reports_the_answer_steps_views(tiny_qwen: Path, pdf: Path, tmp_path: Path) -> None:
    """A checkpoint whose egr_config.json asks for the window alone at two scales: ``egr ask``
    reads it both ways, keeps the likelier answer and reports both reads."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen, model)
    knobs = {"legible_scale": 2.0, "crop_pixels": 448, "max_rounds": 1, "min_rounds": 1}
    knobs |= {"top_k": 1, "max_windows": 1, "answer_round": "last"}
    knobs |= {"answer_page": False, "read_scales": [0.9]}
    (model / "egr_config.json").write_text(json.dumps(knobs))
    args = ["ask", str(pdf), "What is the total?", "--model", str(model), "--page", "0"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    reads = out["reads"]
    assert out["answer_round"] == 1 and out["rounds"][1]["crops_pt"]  # the window answered
    assert [(r["scale"], r["page"]) for r in reads] == [(1.0, False), (0.9, False)]
    assert out["answer"] == max(reads, key=lambda r: r["logprob"])["answer"]
    assert out["answer_logprob"] == pytest.approx(max(r["logprob"] for r in reads) / 2)
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "read at 1x alone" in text.stdout
    assert f"log-likelihood per view {out['answer_logprob']:.2f} nats" in text.stdout
