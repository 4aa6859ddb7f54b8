"""The synthetic document generator: determinism, answer boxes against the text layer, question
sets, small print, and the ``egr synth`` command."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from collections import Counter

import pytest

from egr import synth
from egr.synth import KINDS, QUESTIONS, VALUE_ALPHABET, generate, generate_corpus
from egr_core.documents import open_pdf

N_CORPUS = 120  # 30 documents of each kind


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, synth.SynthDocument]]:
    return list(generate_corpus(N_CORPUS, seed=2024))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", KINDS)
def test_same_kind_and_seed_give_identical_bytes(kind: str) -> None:
    a, b = generate(kind, 77), generate(kind, 77)
    assert _sha(a.pdf) == _sha(b.pdf) == a.doc_id
    assert a.fields == b.fields and a.spans == b.spans


def test_bytes_are_identical_in_a_fresh_process() -> None:
    code = (
        "from egr.synth import generate_corpus\n"
        "for name, d in generate_corpus(4, seed=5):\n"
        "    print(name, d.doc_id)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    here = [f"{name} {d.doc_id}" for name, d in generate_corpus(4, seed=5)]
    assert res.stdout.split("\n")[:-1] == here


def test_different_seeds_give_different_documents() -> None:
    docs = [generate("invoice", s) for s in range(6)]
    assert len({d.doc_id for d in docs}) == 6
    assert len({d.field("invoice_total").answer for d in docs}) == 6


def test_corpus_is_prefix_stable_and_kinds_take_turns(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    small = list(generate_corpus(8, seed=2024))
    assert [(n, d.doc_id) for n, d in small] == [(n, d.doc_id) for n, d in corpus[:8]]
    assert [d.kind for _, d in small] == [KINDS[i % 4] for i in range(8)]
    assert [n for n, _ in small[:2]] == ["invoice-00000.pdf", "form-00001.pdf"]
    only = [d.kind for _, d in generate_corpus(3, seed=1, kinds=["table"])]
    assert only == ["table"] * 3


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown document kind.*'memo'.*invoice"):
        generate("memo", 1)
    with pytest.raises(ValueError, match="n_docs"):
        list(generate_corpus(-1, seed=0))


# ---------------------------------------------------------------- answers and boxes


def test_text_under_every_answer_box_equals_the_answer(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    """The issue's check, through the documents layer: text_in_box(page, box) == answer."""
    n_checked = 0
    for name, doc in corpus:
        with open_pdf(doc.pdf, name=name) as pdf:
            assert pdf.doc_id == doc.doc_id
            assert pdf.n_pages == doc.n_pages
            for f in doc.fields:
                got = pdf.text_in_box(f.page, doc.box(f.span))
                assert got == f.answer, f"{name} {f.question_id}: {got!r} != {f.answer!r}"
                n_checked += 1
    assert n_checked == sum(len(QUESTIONS[d.kind]) for _, d in corpus) >= 100 * 4


def test_answer_box_matches_the_text_layer_word_box(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    """box_pt is the glyph box PyMuPDF reports for the answer word (within 0.01 pt)."""
    for name, doc in corpus[:40]:
        with open_pdf(doc.pdf, name=name) as pdf:
            for f in doc.fields:
                words = [w for w in pdf.words(f.page) if w.text == f.answer]
                assert len(words) == 1, f"{name} {f.question_id}: {len(words)} words"
                for got, want in zip(words[0].rect_pt, f.span.box_pt, strict=True):
                    assert got == pytest.approx(want, abs=0.01)


def test_each_answer_occurs_once_in_its_document_and_answers_differ(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    for name, doc in corpus:
        with open_pdf(doc.pdf, name=name) as pdf:
            words = Counter(w.text for i in range(pdf.n_pages) for w in pdf.words(i))
        answers = [f.answer for f in doc.fields]
        assert len(set(answers)) == len(answers), f"{name}: repeated answers {answers}"
        for a in answers:
            assert words[a] == 1, f"{name}: {a!r} occurs {words[a]} times"


def test_answers_are_short_courier_strings_from_the_value_alphabet(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    for _, doc in corpus:
        for f in doc.fields:
            assert set(f.answer) <= VALUE_ALPHABET and 4 <= len(f.answer) <= 16, f.answer
            assert f.span.font in ("cour", "cobo") and f.span.role == "value"
            cells = f.span.char_boxes_pt()
            assert len(cells) == len(f.answer)
            assert cells[0][0] == pytest.approx(f.span.box_pt[0])
            assert cells[-1][2] == pytest.approx(f.span.box_pt[2], abs=1e-3)


def test_char_boxes_need_a_monospace_span() -> None:
    doc = generate("report", 3)
    body = next(s for s in doc.spans if s.role == "body")
    with pytest.raises(ValueError, match="not a monospace font"):
        body.char_boxes_pt()


def test_every_document_of_a_kind_has_the_same_questions(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    for _, doc in corpus:
        assert [(f.question_id, f.question) for f in doc.fields] == list(QUESTIONS[doc.kind])
    ids = [q.question_id for q in synth.question_set()]
    assert len(ids) == len(set(ids)) == sum(len(v) for v in QUESTIONS.values())
    assert [q.question_id for q in synth.question_set(["form"])] == [
        qid for qid, _ in QUESTIONS["form"]
    ]


def test_reports_have_several_pages_and_answers_after_the_first(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    reports = [d for _, d in corpus if d.kind == "report"]
    assert reports and all(3 <= d.n_pages <= 5 for d in reports)
    assert all(f.page >= 1 for d in reports for f in d.fields)
    assert {d.n_pages for d in reports} == {3, 4, 5}


# ---------------------------------------------------------------- small print and layout


def test_every_document_has_small_print_that_a_downscaled_page_cannot_resolve(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    """At a full-page budget of 1280 merged 28 px tokens, small print packs > 4 characters into a
    token width; a crop re-rendered at 28 px per character (pitch) makes one character one token.
    Regular values stay at >= 8.4 pt (9 pt on a layout shrunk by the smallest jitter, 0.94)."""
    budget_px = 1280 * 28 * 28
    for name, doc in corpus:
        small = [f for f in doc.fields if f.small_print]
        assert len(small) >= 1, name
        for f in doc.fields:
            w, h = doc.page_sizes_pt[f.page]
            px_per_pt = math.sqrt(budget_px / (w * h))
            pitch_px = 0.6 * f.span.size_pt * px_per_pt
            if f.small_print:
                assert 6.0 <= f.span.size_pt <= 8.0
                assert 28 / pitch_px > 4.0, f"{name} {f.question_id}: pitch {pitch_px:.1f} px"
            else:
                assert f.span.size_pt >= 8.4


def test_text_runs_stay_on_the_page_and_do_not_overlap(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    """Layout sanity: no two text runs of a page overlap (boxes shrunk to the x-height band)."""
    for name, doc in corpus[:60]:
        by_page: dict[int, list[tuple[float, float, float, float]]] = {}
        for s in doc.spans:
            w, h = doc.page_sizes_pt[s.page]
            x0, y0, x1, y1 = s.box_pt
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, f"{name}: {s.text!r} off the page"
            pad = 0.25 * (y1 - y0)
            by_page.setdefault(s.page, []).append((x0 + 0.5, y0 + pad, x1 - 0.5, y1 - pad))
        for page, boxes in by_page.items():
            boxes.sort()
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    if b[0] >= a[2]:
                        break
                    assert not (b[1] < a[3] and a[1] < b[3]), f"{name} p{page}: {a} overlaps {b}"


def test_ground_truth_rows(corpus: list[tuple[str, synth.SynthDocument]]) -> None:
    name, doc = corpus[3]  # a report
    rows = doc.ground_truth(name)
    assert len(rows) == len(QUESTIONS[doc.kind])
    keys = {"doc", "doc_id", "kind", "question_id", "question", "answer", "page", "box_pt", "box"}
    for row, f in zip(rows, doc.fields, strict=True):
        assert keys | {"font", "size_pt", "small_print"} <= set(row)
        assert row["doc"] == name and row["doc_id"] == _sha(doc.pdf)
        assert row["answer"] == f.answer and row["page"] == f.page
        w, h = doc.page_sizes_pt[row["page"]]
        x0, y0, x1, y1 = row["box_pt"]
        assert row["box"] == pytest.approx([x0 / w, y0 / h, x1 / w, y1 / h], abs=1e-5)
        json.dumps(row)  # JSON-ready
    assert doc.seed < 2**63  # fits a signed int64 column


# ---------------------------------------------------------------- the command


def test_synth_command_writes_pdfs_questions_and_ground_truth(tmp_path) -> None:
    from typer.testing import CliRunner

    from egr.cli import app
    from egr_core.questions import load_questions

    out = tmp_path / "corpus"
    runner = CliRunner()
    res = runner.invoke(app, ["synth", str(out), "--docs", "6", "--seed", "9"])
    assert res.exit_code == 0, res.output
    pdfs = sorted(p.name for p in out.glob("*.pdf"))
    assert pdfs == sorted(n for n, _ in generate_corpus(6, seed=9))
    questions = load_questions(out / "questions.yaml")
    assert [q.question_id for q in questions] == [q.question_id for q in synth.question_set()]
    rows = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(QUESTIONS[KINDS[i % 4]]) for i in range(6))
    for row in rows:
        assert row["doc_id"] == _sha((out / row["doc"]).read_bytes())
    assert "total" in res.output and "ground truth" in res.output

    # A second run into the same folder needs --force, and then drops PDFs it no longer makes.
    res = runner.invoke(app, ["synth", str(out), "--docs", "2", "--seed", "9"])
    assert res.exit_code != 0 and "--force" in res.output
    res = runner.invoke(app, ["synth", str(out), "--docs", "2", "--seed", "9", "--force"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.pdf")) == ["form-00001.pdf", "invoice-00000.pdf"]

    # Foreign PDFs in OUT are refused, even with --force; unknown kinds are refused.
    (out / "scan.pdf").write_bytes(b"%PDF-1.7\n")
    res = runner.invoke(app, ["synth", str(out), "--docs", "1", "--force"])
    assert res.exit_code != 0 and "scan.pdf" in res.output
    res = runner.invoke(app, ["synth", str(tmp_path / "x"), "--kinds", "table,memo"])
    assert res.exit_code != 0 and "memo" in res.output


def test_synth_command_kinds_filter(tmp_path) -> None:
    from typer.testing import CliRunner

    from egr.cli import app

    out = tmp_path / "tables"
    res = CliRunner().invoke(app, ["synth", str(out), "-n", "2", "--kinds", "table", "-k", "form"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.pdf")) == ["form-00001.pdf", "table-00000.pdf"]
    text = (out / "questions.yaml").read_text()
    assert "table_q3_total" in text and "form_policy_number" in text and "invoice" not in text


# ---------------------------------------------------------------- layout jitter


def _prior_pointing(train: list[synth.SynthDocument], test: list[synth.SynthDocument]) -> float:
    """Share of test answers whose box touches the page-grid cell (15 x 19) holding the mean
    centre of that field over ``train``: the no-model "where this field usually is" rule."""
    mean: dict[str, tuple[float, float]] = {}
    for qid in {f.question_id for d in train for f in d.fields}:
        boxes = [
            d.box(d.field(qid).span) for d in train if qid in {f.question_id for f in d.fields}
        ]
        mean[qid] = (
            sum((b.x0 + b.x1) / 2 for b in boxes) / len(boxes),
            sum((b.y0 + b.y1) / 2 for b in boxes) / len(boxes),
        )
    hits = n = 0
    for d in test:
        for f in d.fields:
            cx, cy = int(mean[f.question_id][0] * 15), int(mean[f.question_id][1] * 19)
            b = d.box(f.span)
            n += 1
            hits += (
                b.x0 < (cx + 1) / 15 and b.x1 > cx / 15 and b.y0 < (cy + 1) / 19 and b.y1 > cy / 19
            )
    return hits / n


def test_jittered_layouts_leave_no_fixed_position_that_answers() -> None:
    def docs(seed: int, jitter: bool) -> list[synth.SynthDocument]:
        return [generate(KINDS[i % 4], synth.doc_seed(seed, i), jitter=jitter) for i in range(48)]

    fixed = _prior_pointing(docs(1, False), docs(2, False))
    jittered = _prior_pointing(docs(1, True), docs(2, True))
    assert fixed > 0.6, fixed  # the base layouts: position alone answers most questions
    assert jittered < 0.35, jittered


def test_jitter_changes_page_size_position_and_field_order() -> None:
    base, jit = generate("invoice", 5, jitter=False), generate("invoice", 5, jitter=True)
    assert [f.answer for f in base.fields] == [f.answer for f in jit.fields]  # same content
    assert base.doc_id != jit.doc_id
    orders = set()
    for seed in range(8):
        d = generate("invoice", seed)
        meta = [f for f in d.fields if f.question_id in ("invoice_number", "invoice_date")]
        orders.add(meta[0].span.box_pt[1] < meta[1].span.box_pt[1])
    assert orders == {True, False}  # the meta block's field order varies
    sizes = {generate("form", s).page_sizes_pt[0] for s in range(6)}
    assert len(sizes) == 6


def test_question_set_names_the_documents_of_its_kind() -> None:
    qs = synth.question_set()
    for name, doc in generate_corpus(8, seed=3):
        asked = {q.question_id for q in qs if q.applies_to(name)}
        assert asked == {f.question_id for f in doc.fields}, name
