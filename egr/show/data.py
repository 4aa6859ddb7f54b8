"""What the picture of one answer shows, read from the store's SQL views: the answer, its rounds'
entropies, its evidence rows (crop and region boxes, text, crop PNG) and the relevance grids of
the round that chose the evidence.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from egr_core.types import Box
from egr_pipeline.store import StoreError

log = logging.getLogger(__name__)


class ShowError(StoreError):
    """The requested document, question or run is not in the store."""

    status = "not_found"


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    rank: int
    box: Box
    score: float | None
    round: int
    text: str | None
    crop_png: bytes | None
    box_pt: tuple[float, float, float, float]
    #: the crop the answer was read through (None: read from the page view, or an older table)
    crop: Box | None = None
    crop_pt: tuple[float, float, float, float] | None = None

    @property
    def shown(self) -> Box:
        """The box drawn on the page: what the model read (its crop), else the region."""
        return self.crop or self.box


@dataclass(frozen=True, slots=True)
class GridItem:
    box: Box  # where the grid lies on the page
    values: np.ndarray = field(repr=False)  # (R, C) raw scores
    block: int = 0
    kind: str = "view"
    span: int = 0


@dataclass(frozen=True, slots=True)
class ShowData:
    doc_id: str
    uri: str | None
    run_id: str
    model_id: str | None
    config_hash: str | None
    question_id: str
    question: str
    answer: str | None
    status: str
    error: str | None
    page: int | None
    width_pt: float | None
    height_pt: float | None
    entropy_before: float | None
    entropy_after: float | None
    n_rounds: int | None
    stop_reason: str | None
    evidence: tuple[EvidenceItem, ...]
    grids: tuple[GridItem, ...]  # of the heatmap round
    heat_round: int | None
    answer_round: int | None = None  # the round whose inputs the answer was read from
    round_entropies: tuple[float | None, ...] = ()  # first-token entropy of every round
    #: the answer step's views (answers.reads): (scale, page view beside, answer, logprob)
    reads: tuple[tuple[float, bool, str, float | None], ...] = ()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    cur = con.execute(sql, params)
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _all(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def resolve_doc(con: duckdb.DuckDBPyConnection, doc: str) -> tuple[str, str | None]:
    """``(doc_id, uri)`` for a doc_id, a doc_id prefix, a uri or a file name.

    Raises:
        ShowError: no document or more than one matches (the message lists candidates).
    """
    rows = _all(
        con,
        "SELECT doc_id, any_value(uri) AS uri FROM documents "
        "WHERE starts_with(doc_id, ?) OR uri = ? OR ends_with(uri, '/' || ?) "
        "OR ends_with(lower(uri), '/' || lower(?) || '.pdf') "
        "GROUP BY doc_id ORDER BY doc_id",
        [doc, doc, doc, doc],
    )
    if not rows:
        known = _all(con, "SELECT DISTINCT doc_id, uri FROM documents ORDER BY uri LIMIT 8", [])
        listing = ", ".join(f"{r['uri']} ({r['doc_id'][:12]})" for r in known)
        raise ShowError(f"unknown document {doc!r}; known documents: {listing or 'none'}")
    if len(rows) > 1:
        listing = ", ".join(f"{r['uri']} ({r['doc_id'][:12]})" for r in rows[:8])
        raise ShowError(f"document {doc!r} is ambiguous: {len(rows)} match: {listing}")
    return rows[0]["doc_id"], rows[0]["uri"]


def load_show_data(
    con: duckdb.DuckDBPyConnection,
    doc: str,
    question_id: str,
    *,
    run_id: str | None = None,
    heat_round: int | None = None,
) -> ShowData:
    """Everything the picture needs, from the views over a store.

    Args:
        con: a connection from :func:`egr_pipeline.duck.connect`.
        doc: doc_id, doc_id prefix, uri or file name.
        question_id: the question's id.
        run_id: show this run's answer instead of the latest one.
        heat_round: zoom round whose relevance maps to paint; default the round of the
            top-ranked evidence, else the last round stored.

    Raises:
        ShowError: unknown document, question, run or round.
    """
    doc_id, uri = resolve_doc(con, doc)
    if run_id is None:
        ans = _one(
            con,
            "SELECT * FROM answers_latest WHERE doc_id = ? AND question_id = ?",
            [doc_id, question_id],
        )
    else:
        if _one(con, "SELECT run_id FROM answers WHERE run_id = ? LIMIT 1", [run_id]) is None:
            runs = [r["run_id"] for r in _all(con, "SELECT DISTINCT run_id FROM answers", [])]
            raise ShowError(f"unknown run {run_id!r}; runs with answers: {', '.join(sorted(runs))}")
        ans = _one(
            con,
            "SELECT * FROM answers WHERE doc_id = ? AND question_id = ? AND run_id = ? "
            "ORDER BY written_at DESC LIMIT 1",
            [doc_id, question_id, run_id],
        )
    if ans is None:
        qids = [
            r["question_id"]
            for r in _all(
                con,
                "SELECT DISTINCT question_id FROM answers WHERE doc_id = ? ORDER BY 1",
                [doc_id],
            )
        ]
        where = f" in run {run_id}" if run_id else ""
        raise ShowError(
            f"unknown question {question_id!r} for document {uri or doc_id}{where}; "
            f"its questions: {', '.join(qids) or 'none'}"
        )
    return _show_data(con, ans, uri, heat_round)


def load_answer_data(
    con: duckdb.DuckDBPyConnection, run_id: str, work_key: str, *, heat_round: int | None = None
) -> ShowData:
    """Like :func:`load_show_data`, for the answers row identified by ``(run_id, work_key)``.

    Raises:
        ShowError: no such answer, or ``heat_round`` has no maps.
    """
    ans = _one(
        con,
        "SELECT * FROM answers WHERE run_id = ? AND work_key = ? ORDER BY written_at DESC LIMIT 1",
        [run_id, work_key],
    )
    if ans is None:
        raise ShowError(f"no answer with run {run_id!r} and work key {work_key[:12]!r}")
    doc = _one(
        con,
        "SELECT uri FROM documents WHERE doc_id = ? ORDER BY (run_id = ?) DESC, written_at DESC "
        "LIMIT 1",
        [ans["doc_id"], run_id],
    )
    return _show_data(con, ans, doc["uri"] if doc else None, heat_round)


def _show_data(
    con: duckdb.DuckDBPyConnection,
    ans: dict[str, Any],
    uri: str | None,
    heat_round: int | None,
) -> ShowData:
    doc_id, question_id = ans["doc_id"], ans["question_id"]
    key, rid = ans["work_key"], ans["run_id"]
    ev_rows = _all(
        con,
        "SELECT * EXCLUDE (crop_png), crop_png FROM evidence "
        "WHERE run_id = ? AND work_key = ? ORDER BY rank",
        [rid, key],
    )
    evidence = tuple(
        EvidenceItem(
            rank=r["rank"],
            box=Box(r["x0_n"], r["y0_n"], r["x1_n"], r["y1_n"]),
            score=r["score"],
            round=r["round"],
            text=r["evidence_text"],
            crop_png=bytes(r["crop_png"]) if r["crop_png"] is not None else None,
            box_pt=(r["x0_pt"], r["y0_pt"], r["x1_pt"], r["y1_pt"]),
            crop=_crop_box(r),
            crop_pt=(
                (r["crop_x0_pt"], r["crop_y0_pt"], r["crop_x1_pt"], r["crop_y1_pt"])
                if _crop_box(r) is not None
                else None
            ),
        )
        for r in ev_rows
    )
    map_rows = _all(
        con, "SELECT * FROM maps WHERE run_id = ? AND work_key = ? ORDER BY round, span", [rid, key]
    )
    rounds = sorted({r["round"] for r in map_rows})
    if heat_round is None:
        heat_round = evidence[0].round if evidence else (rounds[-1] if rounds else None)
    elif heat_round not in rounds:
        raise ShowError(
            f"round {heat_round} has no relevance maps for {question_id!r}; rounds stored: "
            f"{', '.join(map(str, rounds)) or 'none'}"
        )
    grids = tuple(
        GridItem(
            box=Box(r["x0_n"], r["y0_n"], r["x1_n"], r["y1_n"]),
            values=np.asarray(r["scores"], dtype=np.float32).reshape(r["rows"], r["cols"])
            * float(r["scale"]),
            block=r["block"],
            kind=r["kind"] or "view",
            span=r["span"],
        )
        for r in map_rows
        if r["round"] == heat_round
    )
    page = ans["page"]
    geo = None
    if page is not None:
        geo = _one(
            con,
            "SELECT width_pt, height_pt FROM pages WHERE doc_id = ? AND page = ? "
            "ORDER BY (run_id = ?) DESC, written_at DESC LIMIT 1",
            [doc_id, page, rid],
        )
    return ShowData(
        doc_id=doc_id,
        uri=uri,
        run_id=rid,
        model_id=ans["model_id"],
        config_hash=ans["config_hash"],
        question_id=question_id,
        question=ans["question"],
        answer=ans["answer"],
        status=ans["status"],
        error=ans["error"],
        page=page,
        width_pt=geo["width_pt"] if geo else None,
        height_pt=geo["height_pt"] if geo else None,
        entropy_before=ans["entropy_before"],
        entropy_after=ans["entropy_after"],
        n_rounds=ans["n_rounds"],
        stop_reason=ans["stop_reason"],
        evidence=evidence,
        grids=grids,
        heat_round=heat_round if grids else None,
        answer_round=ans.get("answer_round"),
        round_entropies=_round_entropies(ans.get("rounds")),
        reads=_reads(ans.get("reads")),
    )


def _crop_box(row: dict[str, Any]) -> Box | None:
    """The evidence row's crop box (schema 3), None when it has none or predates the column."""
    vals = [row.get(f"crop_{c}_n") for c in ("x0", "y0", "x1", "y1")]
    return None if any(v is None for v in vals) else Box(*vals)


def _round_entropies(blob: str | None) -> tuple[float | None, ...]:
    if not blob:
        return ()
    try:
        return tuple(r.get("entropy") for r in json.loads(blob))
    except (ValueError, AttributeError, TypeError):
        return ()


def _reads(blob: str | None) -> tuple[tuple[float, bool, str, float | None], ...]:
    """answers.reads (schema 4) as tuples; () when the answer was read once or predates it."""
    if not blob:
        return ()
    try:
        return tuple(
            (float(v["scale"]), bool(v["page"]), str(v["answer"]), v.get("logprob"))
            for v in json.loads(blob)
        )
    except (ValueError, KeyError, AttributeError, TypeError):
        return ()
