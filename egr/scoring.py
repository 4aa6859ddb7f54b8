"""Score a run's answers against a synthetic corpus's ground truth (``ground_truth.jsonl``).

Two measures, per kind of document and overall:
- exact match: the answer equals the ground-truth string after trimming whitespace;
- evidence hit: the top-ranked evidence (rank 1) is on the answer's page and the box the model
  read (its crop, or the region when the answer came from the page view) contains the whole
  ground-truth answer box (normalised page coordinates, 0.5% of the page as tolerance);
  the mean area of those boxes (as a fraction of the page) is reported beside it, since a box
  covering the whole page would contain every answer.
Only (document, question) pairs present in the ground truth are scored (a questions file
without ``documents`` patterns also asks each document the other kinds' questions).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KindScore:
    kind: str
    n: int
    exact: int
    evidence_hits: int
    answered: int  # items with status ok / no_evidence (not failed)
    box_area: float = 0.0  # mean area of the top-1 evidence boxes, as a fraction of the page

    @property
    def accuracy(self) -> float:
        return self.exact / self.n if self.n else 0.0

    @property
    def evidence_rate(self) -> float:
        return self.evidence_hits / self.n if self.n else 0.0


@dataclass(frozen=True)
class ScoreReport:
    kinds: tuple[KindScore, ...]
    missing: int  # ground-truth pairs the run has no answer for
    examples: tuple[dict[str, Any], ...] = field(default=())

    @property
    def total(self) -> KindScore:
        n = sum(k.n for k in self.kinds)
        return KindScore(
            "all",
            n,
            sum(k.exact for k in self.kinds),
            sum(k.evidence_hits for k in self.kinds),
            sum(k.answered for k in self.kinds),
            sum(k.box_area * k.n for k in self.kinds) / n if n else 0.0,
        )


def load_ground_truth(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``ground_truth.jsonl`` written by ``egr synth``."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: not JSON ({exc.msg})") from exc
    return rows


def normalise(text: str | None) -> str:
    return " ".join((text or "").split())


def _shown(row: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """The normalised box the model read: the crop (schema 3) when there is one, else the box."""
    if row.get("crop_x0_n") is not None:
        return (row["crop_x0_n"], row["crop_y0_n"], row["crop_x1_n"], row["crop_y1_n"])
    return (row["x0_n"], row["y0_n"], row["x1_n"], row["y1_n"])


def box_contains(box: Mapping[str, Any], gt: list[float], tol: float = 0.005) -> bool:
    """Whether an evidence row's box (its crop, else its region) holds the ground-truth box
    ``[x0, y0, x1, y1]``."""
    x0, y0, x1, y1 = _shown(box)
    return bool(x0 <= gt[0] + tol and y0 <= gt[1] + tol and gt[2] <= x1 + tol and gt[3] <= y1 + tol)


def box_area(box: Mapping[str, Any]) -> float:
    x0, y0, x1, y1 = _shown(box)
    return float((x1 - x0) * (y1 - y0))


def score(
    ground_truth: Iterable[Mapping[str, Any]],
    answers: Iterable[Mapping[str, Any]],
    evidence: Iterable[Mapping[str, Any]] = (),
) -> ScoreReport:
    """Compare answer rows (and rank-1 evidence rows) with ground-truth rows.

    Args:
        ground_truth: rows with doc_id, question_id, kind, answer, page, box (normalised).
        answers: rows of the answers table (doc_id, question_id, answer, status, ...). When a pair
            was answered in several runs, pass one run's rows only.
        evidence: rows of the evidence table (doc_id, question_id, rank, page, x0_n..y1_n).
    """
    by_key = {(a["doc_id"], a["question_id"]): a for a in answers}
    top1 = {(e["doc_id"], e["question_id"]): e for e in evidence if int(e.get("rank", 0)) == 1}
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    areas: dict[str, list[float]] = defaultdict(list)
    missing, examples = 0, []
    for gt in ground_truth:
        key = (gt["doc_id"], gt["question_id"])
        t = tallies[gt.get("kind", "?")]
        t[0] += 1
        row = by_key.get(key)
        if row is None:
            missing += 1
            continue
        ok = normalise(row.get("answer")) == normalise(gt["answer"])
        t[1] += ok
        ev = top1.get(key)
        t[2] += bool(ev is not None and ev["page"] == gt["page"] and box_contains(ev, gt["box"]))
        if ev is not None:
            areas[gt.get("kind", "?")].append(box_area(ev))
        t[3] += row.get("status") != "failed"
        if len(examples) < 8:
            examples.append(
                {
                    "doc": gt.get("doc"),
                    "question_id": gt["question_id"],
                    "expected": gt["answer"],
                    "answer": row.get("answer"),
                    "match": ok,
                }
            )
    kinds = tuple(
        KindScore(k, *v, box_area=sum(areas[k]) / len(areas[k]) if areas[k] else 0.0)
        for k, v in sorted(tallies.items())
    )
    return ScoreReport(kinds, missing, tuple(examples))
