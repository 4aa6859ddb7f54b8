"""Evidence text is there whenever the text layer has words under the box: over ``egr synth``
documents, where every answer's box and text are known, a box over any part of the answer reads
the answer; a page without a text layer says so (``text_source = none``)."""

from __future__ import annotations

import io

import pymupdf
import pytest
from PIL import Image
from store_fixtures import grounded

from egr import synth
from egr_core.documents import TEXT_TOLERANCE_PT, open_pdf
from egr_core.types import Box
from egr_pipeline import records
from egr_pipeline.answer_rows import answer_rows


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, synth.SynthDocument]]:
    return list(synth.generate_corpus(12, seed=17))


def _part(box: Box, fx0: float, fy0: float, fx1: float, fy1: float) -> Box:
    """The part of ``box`` between fractions ``fx0..fx1`` of its width and ``fy0..fy1`` of its
    height."""
    w, h = box.x1 - box.x0, box.y1 - box.y0
    return Box(box.x0 + fx0 * w, box.y0 + fy0 * h, box.x0 + fx1 * w, box.y0 + fy1 * h)


#: Boxes over part of an answer: its left or right quarter (the word's centre is outside),
#: its middle, its upper half, and the box grown a little past the word on every side.
PARTS = {
    "left quarter": (0.0, 0.1, 0.25, 0.9),
    "right quarter": (0.75, 0.1, 1.0, 0.9),
    "middle": (0.3, 0.3, 0.7, 0.7),
    "upper half": (0.0, 0.0, 1.0, 0.5),
    "grown": (-0.05, -0.1, 1.05, 1.1),
}


def test_a_box_over_any_part_of_an_answer_reads_the_whole_answer(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    n = 0
    for name, doc in corpus:
        with open_pdf(doc.pdf, name=name) as pdf:
            for f in doc.fields:
                whole = doc.box(f.span)
                for label, frac in PARTS.items():
                    got = pdf.text_in_box(f.page, _part(whole, *frac))
                    assert got == f.answer, f"{name} {f.question_id} {label}: {got!r}"
                    n += 1
    assert n == len(PARTS) * sum(len(d.fields) for _, d in corpus) > 200


def test_a_box_that_only_grazes_an_answer_does_not_read_it(
    corpus: list[tuple[str, synth.SynthDocument]],
) -> None:
    name, doc = corpus[0]
    with open_pdf(doc.pdf, name=name) as pdf:
        for f in doc.fields:
            _, y0, x1, y1 = f.span.box_pt
            w, h = doc.page_sizes_pt[f.page]
            graze = TEXT_TOLERANCE_PT / 2  # less than the tolerance
            right = Box((x1 - graze) / w, y0 / h, min((x1 + 30) / w, 1.0), y1 / h)
            assert f.answer not in pdf.text_in_box(f.page, right).split()


def _scan_pdf() -> bytes:
    """A one-page PDF holding only a picture of text (no text layer), like a scan."""
    img = Image.new("RGB", (400, 200), "white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with pymupdf.open() as doc:
        page = doc.new_page(width=300, height=150)
        page.insert_image(page.rect, stream=buf.getvalue())
        return doc.tobytes()


def test_a_page_without_a_text_layer_has_text_source_none() -> None:
    with open_pdf(_scan_pdf(), name="scan.pdf") as pdf:
        assert not pdf.has_text_layer(0)
    ctx = records.RunContext("r1", "m", "c", "0.1.0")
    ans = grounded("q", "What?", "x", [Box(0.1, 0.1, 0.5, 0.5)])
    page = records.PageSize(300, 150)
    scan = answer_rows(ctx, "d" * 64, 0, page, ans, lambda b: "", text_source="none")
    assert [(r["evidence_text"], r["text_source"]) for r in scan["evidence"]] == [(None, "none")]
    text = answer_rows(ctx, "d" * 64, 0, page, ans, lambda b: "Total")
    assert [(r["evidence_text"], r["text_source"]) for r in text["evidence"]] == [
        ("Total", "text_layer")
    ]
    bare = answer_rows(ctx, "d" * 64, 0, page, ans)
    assert [(r["evidence_text"], r["text_source"]) for r in bare["evidence"]] == [(None, None)]
