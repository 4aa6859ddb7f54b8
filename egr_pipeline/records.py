"""Turn the core's result types into table rows (plain dicts matching :mod:`egr_pipeline.schemas`).

The store stamps ``group_id`` and ``written_at``; everything else is filled in here, including
the provenance columns taken from :class:`RunContext`. Nothing here touches a filesystem.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from PIL import Image

from egr_core.types import Box, GroundedAnswer, Question, Region, Status, ZoomRound

Row = dict[str, Any]

#: Called with an evidence box (normalised page coords); returns the text layer under it.
TextFn = Callable[[Box], str]
#: ``evidence.text_source`` values: the page's text layer, or none (a scan without one).
TEXT_LAYER, NO_TEXT = "text_layer", "none"
#: Called with an evidence box; returns the crop as a PIL image or already-encoded PNG bytes.
CropPngFn = Callable[[Box], "Image.Image | bytes"]


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


def _finite(x: float | None) -> float | None:
    """Parquet stores NaN/inf fine, but SQL averages do not; keep +inf, map NaN to null."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _box_cols(box: Box | None, size: HasPageSize, prefix: str = "") -> Row:
    """The ``*_n`` and ``*_pt`` columns of ``box`` (all null when ``box`` is None)."""
    w, h = float(size.width_pt), float(size.height_pt)
    out: Row = {}
    values = box.as_tuple() if box is not None else (None,) * 4
    for name, v, side in zip(("x0", "y0", "x1", "y1"), values, (w, h, w, h), strict=True):
        out[f"{prefix}{name}_n"] = v
        out[f"{prefix}{name}_pt"] = None if v is None else v * side
    return out


def _rounds_json(rounds: Sequence[ZoomRound]) -> str:
    """Every round's crops (normalised page boxes) and entropies, for the answers table."""
    return json.dumps(
        [
            {
                "round": r.round,
                "entropy": _finite(r.entropy),
                "spatial_entropy": _finite(r.spatial_entropy),
                "crops": [[round(v, 6) for v in b.as_tuple()] for b in r.crops],
            }
            for r in rounds
        ]
    )


def png_bytes(image: Image.Image | bytes | None) -> bytes | None:
    """Encode a PIL image as PNG (bytes pass through unchanged)."""
    if image is None or isinstance(image, bytes | bytearray):
        return bytes(image) if image is not None else None
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _latency(timings: Mapping[str, float]) -> float | None:
    if not timings:
        return None
    if "total" in timings:
        return float(timings["total"])
    return float(sum(timings.values()))


def _round_se(rounds: Sequence[ZoomRound], round_index: int) -> float | None:
    for r in rounds:
        if r.round == round_index:
            return _finite(r.spatial_entropy)
    return None


def answer_rows(
    ctx: RunContext,
    doc_id: str,
    page_index: int,
    page: HasPageSize,
    grounded: GroundedAnswer,
    text_fn: TextFn | None = None,
    crop_fn: CropPngFn | None = None,
    *,
    with_maps: bool = True,
    text_source: str | None = None,
) -> dict[str, list[Row]]:
    """Rows of the answers, evidence and maps tables for one grounded answer on one page.

    Args:
        ctx: provenance of the run.
        doc_id: sha256 of the document.
        page_index: 0-based page the answer was grounded on.
        page: displayed page size in points (``PageGeometry`` or :class:`PageSize`).
        grounded: the core's result.
        text_fn: text layer under a box; ``None`` leaves ``evidence_text`` null.
        crop_fn: crop image (or PNG bytes) of a box; ``None`` leaves ``crop_png`` null.
        with_maps: also emit one maps row per relevance grid of every round.
        text_source: where ``evidence_text`` comes from: ``"text_layer"`` (the page's words;
            "" = no word under the box) or ``"none"`` (the page has no text layer, e.g. a scan:
            ``evidence_text`` stays null); None = ``"text_layer"`` when ``text_fn`` is given.

    Returns:
        ``{"answers": [1 row], "evidence": [K rows], "maps": [one per grid]}``.
    """
    key = work_key(doc_id, grounded.question_id, grounded.question, ctx.model_id, ctx.config_hash)
    prov = ctx.provenance()
    item = {"work_key": key, "doc_id": doc_id, "question_id": grounded.question_id}
    status = grounded.status.value if isinstance(grounded.status, Status) else str(grounded.status)
    answers = [
        {
            **prov,
            **item,
            "question": grounded.question,
            "answer": grounded.answer,
            "page": page_index,
            "status": status,
            "error": grounded.error,
            "entropy_before": _finite(grounded.entropy_before),
            "entropy_after": _finite(grounded.entropy_after),
            "n_rounds": len(grounded.rounds),
            "n_evidence": len(grounded.evidence),
            "stop_reason": grounded.stop_reason,
            "answer_round": grounded.extra.get("answer_round"),
            "rounds": _rounds_json(grounded.rounds),
            "latency_ms": _latency(grounded.timings_ms),
            "timings": json.dumps(grounded.timings_ms, sort_keys=True),
        }
    ]
    if text_source is None:
        text_source = TEXT_LAYER if text_fn is not None else None
    if text_source == NO_TEXT:
        text_fn = None
    evidence = [
        {
            **_evidence_row(
                prov, item, rank, page_index, page, region, grounded.rounds, text_fn, crop_fn
            ),
            "text_source": text_source,
        }
        for rank, region in enumerate(grounded.evidence, start=1)
    ]
    maps = list(_map_rows(prov, item, page_index, page, grounded.rounds)) if with_maps else []
    return {"answers": answers, "evidence": evidence, "maps": maps}


def _evidence_row(
    prov: Row,
    item: Row,
    rank: int,
    page_index: int,
    page: HasPageSize,
    region: Region,
    rounds: Sequence[ZoomRound],
    text_fn: TextFn | None,
    crop_fn: CropPngFn | None,
) -> Row:
    shown = region.crop or region.box
    return {
        **prov,
        **item,
        "rank": rank,
        "page": page_index,
        "round": region.round,
        "block": region.block,
        **_box_cols(region.box, page),
        **_box_cols(region.crop, page, "crop_"),
        "score": _finite(region.score),
        "spatial_entropy": _round_se(rounds, region.round),
        # what the model read: the crop when the answer came from one, else the region
        "evidence_text": text_fn(shown) if text_fn is not None else None,
        "crop_png": png_bytes(crop_fn(shown)) if crop_fn is not None else None,
    }


def _map_rows(
    prov: Row, item: Row, page_index: int, page: HasPageSize, rounds: Iterable[ZoomRound]
) -> Iterable[Row]:
    for zr in rounds:
        for span_i, grid in enumerate(zr.grids):
            scores = np.asarray(grid.scores, dtype=np.float32)  # (R, C)
            rows, cols = grid.span.rows, grid.span.cols
            if scores.shape != (rows, cols):
                raise ValueError(
                    f"relevance grid {span_i} of round {zr.round} has shape {scores.shape}, "
                    f"its span says ({rows}, {cols})"
                )
            finite = scores[np.isfinite(scores)]
            scale = float(np.abs(finite).max()) if finite.size else 0.0
            # float16 keeps ~3 significant digits in [-1, 1]; raw gradient norms can be far
            # below float16's normal range, so the grid is stored divided by its max |score|.
            norm = scores / scale if scale > 0 else np.zeros_like(scores)
            yield {
                **prov,
                **item,
                "page": page_index,
                "round": zr.round,
                "block": grid.span.image_index,
                "span": span_i,
                "kind": grid.span.kind,
                "rows": rows,
                "cols": cols,
                "scale": scale,
                "scores": norm.astype(np.float16).reshape(-1),  # (R*C,)
                **_box_cols(grid.source_box.sub(grid.span.box), page),
                "spatial_entropy": _finite(zr.spatial_entropy),
                "entropy": _finite(zr.entropy),
            }


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
