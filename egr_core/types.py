"""Frozen value types that cross stage boundaries.

One coordinate convention: a :class:`Box` is normalised ``[0, 1]`` with the origin at the top-left
of the *unrotated rendered page* (what the user sees), ``x0 < x1`` and ``y0 < y1``. Pixel values
appear only at the edges and carry a ``_px`` suffix; PDF points carry ``_pt``.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Status(StrEnum):
    OK = "ok"
    NO_EVIDENCE = "no_evidence"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Box:
    """A normalised box, origin top-left, ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"Box has a non-finite coordinate: {vals}")
        eps = 1e-9
        if not (-eps <= self.x0 < self.x1 <= 1 + eps and -eps <= self.y0 < self.y1 <= 1 + eps):
            raise ValueError(f"Box must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1: {vals}")

    @classmethod
    def full(cls) -> Box:
        return cls(0.0, 0.0, 1.0, 1.0)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def contains(self, other: Box, tol: float = 1e-9) -> bool:
        return (
            self.x0 <= other.x0 + tol
            and self.y0 <= other.y0 + tol
            and other.x1 <= self.x1 + tol
            and other.y1 <= self.y1 + tol
        )

    def intersection(self, other: Box) -> float:
        """Area of the overlap with ``other`` (0 if disjoint)."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)

    def sub(self, inner: Box) -> Box:
        """Map ``inner`` (normalised within this box) to the coordinates this box lives in."""
        return Box(
            self.x0 + inner.x0 * self.width,
            self.y0 + inner.y0 * self.height,
            self.x0 + inner.x1 * self.width,
            self.y0 + inner.y1 * self.height,
        )


@dataclass(frozen=True, slots=True)
class GridSpan:
    """A run of ``rows * cols`` consecutive image tokens laid out row-major.

    ``start`` indexes into the image-token sequence (0 = first image token of the prompt, not a
    position in the full text sequence). ``image_index`` says which input image the span covers
    (0 = the page view, 1.. = crops, in the order they were passed). ``box`` is the part of that
    input image the grid covers, normalised to the image (after undoing pad/letterbox).
    """

    start: int
    rows: int
    cols: int
    box: Box
    image_index: int = 0
    kind: str = "view"  # "view" | "tile" | "thumbnail" | "global"

    def __post_init__(self) -> None:
        if self.start < 0 or self.rows <= 0 or self.cols <= 0:
            raise ValueError(f"bad GridSpan start={self.start} rows={self.rows} cols={self.cols}")

    @property
    def n_tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, slots=True)
class TokenLayout:
    spans: tuple[GridSpan, ...]

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.spans)


@dataclass(frozen=True, slots=True)
class Question:
    question_id: str
    text: str
    pages: tuple[int, ...] | None = None  # 0-based page indices; None = let the planner choose
    #: file-name patterns (``fnmatch``, e.g. ``invoice-*.pdf``) of the documents the question is
    #: asked of; None = every document
    documents: tuple[str, ...] | None = None

    def applies_to(self, name: str) -> bool:
        """Whether the question is asked of the document whose file name is ``name``."""
        if self.documents is None:
            return True
        base = name.rstrip("/").rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(base, pat) for pat in self.documents)

    def __post_init__(self) -> None:
        if not self.question_id or not str(self.question_id).strip():
            raise ValueError("question id must be a non-empty string")
        if not self.text or not self.text.strip():
            raise ValueError(f"question {self.question_id!r} has empty text")


@dataclass(frozen=True, slots=True)
class RelevanceGrid:
    """Raw per-token scores of one grid span, shape (R, C), plus where the span sits."""

    span: GridSpan
    scores: np.ndarray = field(repr=False)  # (R, C) float32, raw (not normalised)
    source_box: Box = field(default_factory=Box.full)  # the image's box on the page


@dataclass(frozen=True, slots=True)
class Region:
    """A ranked evidence region. ``box`` is in page coordinates (normalised)."""

    box: Box
    score: float
    block: int  # which image block it came from (0 = page view, 1.. = crops)
    round: int
    #: where the smoothed map peaks inside the region (normalised page x, y), when known
    peak: tuple[float, float] | None = None
    #: as evidence of an answer: the crop (page box) the answer was read through, cut for this
    #: region; None when the answer came from the page view alone
    crop: Box | None = None


@dataclass(frozen=True, slots=True)
class ZoomRound:
    round: int
    crops: tuple[Box, ...]  # the crops (page coords) fed in this round, empty in round 0
    grids: tuple[RelevanceGrid, ...] = field(repr=False)
    regions: tuple[Region, ...]
    spatial_entropy: float
    entropy: float  # first-answer-token entropy for this round's inputs
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroundedAnswer:
    question_id: str
    question: str
    answer: str
    status: Status
    entropy_before: float
    entropy_after: float
    rounds: tuple[ZoomRound, ...]
    #: what the answer was read through, ranked: the answering round's crops (``Region.crop``)
    #: with the regions they were cut for; the page-view regions when it answered from the page
    evidence: tuple[Region, ...]
    stop_reason: str  # "se_increase" | "max_rounds" | "no_region" | "confident" | "plain"
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_logprob(self) -> float | None:
        """The answer's log-likelihood per view (nats) when the answer step scored several views
        (``extra["read_views"]``, :mod:`egr_core.answer_step`): its log-likelihood summed over
        the views divided by their number, so configs reading two or three views compare. The
        answer step's confidence: on the reader's development seed it tells wrong answers from
        right ones better than the first-token entropy (docs/reader.md "How sure"). None when
        the answer was read once or its views were not scored."""
        views = self.extra.get("read_views") or []
        scores = [v["logprob"] for v in views if v["answer"] == self.answer]
        if not scores or any(v["logprob"] is None for v in views):
            return None
        return float(max(scores)) / len(views)
