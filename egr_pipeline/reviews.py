"""The ``reviews`` table: reviewers' verdicts on answers, append-only.

Layout under an output root::

    ROOT/reviews/run_id=<answer's run>/part-<review_id>.parquet   one verdict per file

Each verdict is one small Parquet file written with the store's atomic writer
(:meth:`egr_pipeline.store.Store.write_file`): it appears whole or not at all, so it needs no commit
marker. Nothing is updated or deleted; a reviewer who changes their mind adds a row, and the
``reviews_latest`` view (``sql/00_views.sql``) keeps the newest verdict per answer.

Idempotent: the ``review_id`` is a hash of the answer, the verdict, the reviewer and a
submission id (the browser sends a fresh one per key press and the same one on a retry), so a
repeated submission finds its file already written and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from egr_core.errors import EgrError
from egr_pipeline.schemas import REVIEWS
from egr_pipeline.store import Store

VERDICTS = ("correct", "wrong", "corrected")
REVIEWS_DIR = "reviews"
#: Ids the review page accepts from a browser: run ids, work keys (sha256 hex), submission ids.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
WORK_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
SUBMISSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TEXT = 10_000


class ReviewError(EgrError):
    """A verdict that cannot be recorded (unknown verdict, missing corrected text, ...)."""

    status = "bad_review"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One reviewer's verdict on one answer (an answers row: its run_id and work_key)."""

    answer: Mapping[str, Any]  # the answers row: run_id, work_key, doc_id, question_id, ...
    verdict: str
    reviewer: str
    corrected_answer: str | None = None
    submission: str | None = None


def review_id(v: Verdict, reviewed_at: datetime) -> str:
    """Deterministic id of a submission (the same submission id gives the same review id)."""
    a = v.answer
    nonce = v.submission or reviewed_at.isoformat()
    blob = json.dumps(
        [a["run_id"], a["work_key"], v.verdict, v.corrected_answer or "", v.reviewer, nonce]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def validate(v: Verdict) -> None:
    """Raise :class:`ReviewError` with a one-line reason when ``v`` cannot be recorded."""
    if v.verdict not in VERDICTS:
        raise ReviewError(f"unknown verdict {v.verdict!r}; use one of {', '.join(VERDICTS)}")
    if v.verdict == "corrected" and not (v.corrected_answer or "").strip():
        raise ReviewError("verdict 'corrected' needs the corrected answer text")
    if v.verdict != "corrected" and v.corrected_answer:
        raise ReviewError(f"verdict {v.verdict!r} takes no corrected answer")
    if not v.reviewer.strip():
        raise ReviewError("the reviewer name is empty")
    if len(v.corrected_answer or "") > MAX_TEXT or len(v.reviewer) > 200:
        raise ReviewError("corrected answer or reviewer name too long")
    if v.submission is not None and not SUBMISSION_RE.match(v.submission):
        raise ReviewError("bad submission id (letters, digits, _ and -, at most 64)")
    run_id, key = str(v.answer.get("run_id")), str(v.answer.get("work_key"))
    if not RUN_ID_RE.match(run_id) or not WORK_KEY_RE.match(key):
        raise ReviewError(f"bad answer id: run {run_id!r}, work key {key!r}")


def review_path(run_id: str, rid: str) -> str:
    """Path of a verdict's file, relative to the root."""
    return f"{REVIEWS_DIR}/run_id={run_id}/part-{rid}.parquet"


def write_review(
    store: Store, v: Verdict, *, egr_version: str, now: datetime | None = None
) -> dict[str, Any]:
    """Record one verdict; returns the row. A repeated submission writes nothing new.

    Raises:
        ReviewError: the verdict is invalid (see :func:`validate`).
    """
    validate(v)
    now = now or datetime.now(UTC)
    rid = review_id(v, now)
    a = v.answer
    row = {
        "review_id": rid,
        "run_id": a["run_id"],
        "work_key": a["work_key"],
        "doc_id": a["doc_id"],
        "question_id": a["question_id"],
        "model_id": a.get("model_id"),
        "config_hash": a.get("config_hash"),
        "answer": a.get("answer"),
        "verdict": v.verdict,
        "corrected_answer": v.corrected_answer if v.verdict == "corrected" else None,
        "reviewer": v.reviewer,
        "reviewed_at": now,
        "egr_version": egr_version,
    }
    rel = review_path(a["run_id"], rid)
    if store.fs.exists(posixpath.join(store.path, rel)):
        return row  # the same submission again: already recorded
    store.write_file(rel, pa.Table.from_pylist([row], schema=REVIEWS))
    return row
