"""A run's identity and its bookkeeping rows (plain dicts matching :mod:`egr_pipeline.schemas`):
the provenance of every row (:class:`RunContext`), work keys, and the runs, documents, pages and
failure rows. The answers, evidence and maps rows of a grounded answer are
:mod:`egr_pipeline.answer_rows`. The store stamps ``group_id`` and ``written_at``; nothing here
touches a filesystem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from egr_core.types import Question

Row = dict[str, Any]


class HasPageSize(Protocol):
    """Anything with the displayed page size in points (e.g. ``documents.PageGeometry``)."""

    @property
    def width_pt(self) -> float: ...

    @property
    def height_pt(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RunContext:
    """Provenance stamped on every row of a run."""

    run_id: str
    model_id: str | None
    config_hash: str | None
    egr_version: str

    def __post_init__(self) -> None:
        if not self.run_id or "/" in self.run_id or "=" in self.run_id:
            raise ValueError(f"run_id must be non-empty without '/' or '=': {self.run_id!r}")

    def provenance(self) -> Row:
        return {
            "run_id": self.run_id,
            "model_id": self.model_id,
            "config_hash": self.config_hash,
            "egr_version": self.egr_version,
        }


@dataclass(frozen=True, slots=True)
class DocInfo:
    """What the documents table records about one input file."""

    doc_id: str  # sha256 hex of the bytes
    uri: str
    n_bytes: int | None = None
    n_pages: int | None = None
    title: str | None = None
    status: str = "ok"
    error: str | None = None
    n_pages_processed: int | None = None  # pages rendered and used (None = not recorded)
    truncated: bool = False  # n_pages > max_pages: only the first pages were processed


@dataclass(frozen=True, slots=True)
class PageSize:
    """A minimal :class:`HasPageSize` for callers without a documents-layer geometry."""

    width_pt: float
    height_pt: float
    extra: dict[str, Any] = field(default_factory=dict)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``YYYYmmddTHHMMSSZ-<6 hex>``."""
    now = now or datetime.now(UTC)
    salt = hashlib.sha256(f"{now.isoformat()}{id(now)}".encode()).hexdigest()[:6]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{salt}"


def work_key(
    doc_id: str, question_id: str, question_text: str, model_id: str | None, config_hash: str | None
) -> str:
    """The idempotency key of one (document, question, model, config) item: sha256 hex.

    The fields are JSON-encoded as a list, so no separator inside a field can make two different
    inputs collide.
    """
    blob = json.dumps([doc_id, question_id, question_text, model_id or "", config_hash or ""])
    return hashlib.sha256(blob.encode()).hexdigest()


def failure_rows(
    ctx: RunContext,
    doc_id: str,
    question: Question,
    status: str,
    error: str,
    *,
    page: int | None = None,
) -> dict[str, list[Row]]:
    """The answers row of an item that produced no answer (document or model failure)."""
    key = work_key(doc_id, question.question_id, question.text, ctx.model_id, ctx.config_hash)
    row = {
        **ctx.provenance(),
        "work_key": key,
        "doc_id": doc_id,
        "question_id": question.question_id,
        "question": question.text,
        "answer": None,
        "page": page,
        "status": status,
        "error": error,
        "entropy_before": None,
        "entropy_after": None,
        "n_rounds": 0,
        "n_evidence": 0,
        "stop_reason": None,
        "latency_ms": None,
        "timings": None,
    }
    return {"answers": [row], "evidence": [], "maps": []}


def document_row(ctx: RunContext, doc: DocInfo) -> Row:
    return {
        **ctx.provenance(),
        "doc_id": doc.doc_id,
        "uri": doc.uri,
        "bytes": doc.n_bytes,
        "n_pages": doc.n_pages,
        "n_pages_processed": doc.n_pages_processed,
        "truncated": doc.truncated,
        "title": doc.title,
        "status": doc.status,
        "error": doc.error,
    }


def page_row(
    ctx: RunContext,
    doc_id: str,
    page_index: int,
    page: HasPageSize,
    *,
    rotation: int | None = None,
    dpi: float | None = None,
    width_px: int | None = None,
    height_px: int | None = None,
) -> Row:
    return {
        **ctx.provenance(),
        "doc_id": doc_id,
        "page": page_index,
        "width_pt": float(page.width_pt),
        "height_pt": float(page.height_pt),
        "rotation": rotation if rotation is not None else getattr(page, "rotation", None),
        "dpi": dpi,
        "width_px": width_px,
        "height_px": height_px,
    }


def run_row(
    ctx: RunContext,
    *,
    phase: str,
    status: str,
    started_at: datetime,
    finished_at: datetime | None = None,
    source: str | None = None,
    questions: Sequence[Question] | None = None,
    config: Mapping[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
    model_revision: str | None = None,
    error: str | None = None,
) -> Row:
    """One runs row; ``phase`` is "begin" (status "running") or "end"."""
    qset = None
    if questions is not None:
        qset = json.dumps(
            [
                {"id": q.question_id, "text": q.text, "pages": list(q.pages) if q.pages else None}
                for q in questions
            ]
        )
    return {
        **ctx.provenance(),
        "started_at": started_at,
        "finished_at": finished_at,
        "phase": phase,
        "status": status,
        "source": source,
        "question_set": qset,
        "model_revision": model_revision,
        "config": json.dumps(dict(config), sort_keys=True) if config is not None else None,
        "counts": json.dumps(dict(counts), sort_keys=True) if counts is not None else None,
        "error": error,
    }


def merge(*parts: Mapping[str, list[Row]]) -> dict[str, list[Row]]:
    """Concatenate several ``{table: rows}`` dicts into one (for one write group)."""
    out: dict[str, list[Row]] = {}
    for part in parts:
        for table, rows in part.items():
            out.setdefault(table, []).extend(rows)
    return out
