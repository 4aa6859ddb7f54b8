"""The answers, evidence and maps rows of one grounded answer (the core's
:class:`~egr_core.types.GroundedAnswer` turned into plain dicts matching
:mod:`egr_pipeline.schemas`): boxes in normalised and point coordinates, every round's crops and
entropies, crops as PNG, relevance grids as float16.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from egr_core.types import Box, GroundedAnswer, Region, Status, ZoomRound
from egr_pipeline.records import HasPageSize, Row, RunContext, work_key

#: Called with an evidence box (normalised page coords); returns the text layer under it.
TextFn = Callable[[Box], str]
#: ``evidence.text_source`` values: the page's text layer, or none (a scan without one).
TEXT_LAYER, NO_TEXT = "text_layer", "none"
#: Called with an evidence box; returns the crop as a PIL image or already-encoded PNG bytes.
CropPngFn = Callable[[Box], "Image.Image | bytes"]


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
    """The answer's latency: the core's ``total_ms`` (its own share of a batched page), else the
    sum of its step timings."""
    if not timings:
        return None
    for key in ("total_ms", "total"):
        if key in timings:
            return float(timings[key])
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
            "reads": _reads_json(grounded.extra.get("read_views")),
            "answer_logprob": _finite(grounded.answer_logprob),
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


def _reads_json(views: Any) -> str | None:
    """The answer step's views (``EgrConfig.read_scales`` / ``answer_page``) as JSON, or None when
    the answer was read once."""
    if not views:
        return None
    return json.dumps(
        [
            {
                "scale": float(v["scale"]), "page": bool(v["page"]),
                "answer": str(v["answer"]), "logprob": _finite(v["logprob"]),
            }
            for v in views
        ]
    )  # fmt: skip


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
