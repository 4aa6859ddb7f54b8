"""Method knobs for Entropy-Gradient Grounding, with a stable hash for provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from egr_core.zoom import STOP_RULES

ThresholdRule = Literal["elbow", "fraction"]
SEVariant = Literal["smoothed", "llava"]
StopRule = Literal["spatial_entropy", "fixed", "confidence"]
#: Knobs added after the first release, with the value that reproduces the earlier behaviour: a
#: config at these values hashes as it did before they existed (stable provenance).
_HASH_NEUTRAL = {
    "stop_rule": "spatial_entropy", "stop_tau": 0.5, "crop_page_side": None, "min_rounds": 0,
    "legible_scale": None, "crop_window_pt": 72.0, "answer_round": "last", "max_windows": 3,
    "read_scales": (), "answer_page": True,
}  # fmt: skip
AnswerRound = Literal["last", "confident"]
ANSWER_ROUNDS = ("last", "confident")


@dataclass(frozen=True, slots=True)
class EgrConfig:
    """Knobs of the method (see ``shared/design/method.md``).

    Attributes:
        sigma: Gaussian smoothing of a block's map, in grid cells.
        threshold: "elbow" of sorted smoothed values, or "fraction" of the max.
        threshold_fraction: the fraction used by the "fraction" rule.
        top_k: evidence regions kept per round.
        se_variant: "smoothed" (B = S) or "llava" (B = relu(S - 2 mean S)).
        max_rounds: zoom rounds after the page-only round; 0 = plain answer, no grounding.
        max_new_tokens: generation budget for the answer.
        crop_pixels: target pixel budget (long side) a crop is rendered at.
        crop_page_side: when set, crops are rendered at a fixed scale instead: the resolution at
            which the whole page's long side would be this many pixels (so text keeps one size in
            every crop, whatever the region's size), at most ``crop_pixels`` on the long side.
            For small models trained at one text scale (the reference reader); None = off.
        min_crop: smallest crop side, as a fraction of the page, so a zoom never collapses.
        crop_pad: padding added around a region before cropping, as a fraction of its size.
        stop_rule: when the zoom loop stops: "spatial_entropy" (the paper's rule: stop when the
            spatial entropy stops decreasing), "fixed" (always ``max_rounds`` rounds while regions
            are found) or "confidence" (zoom while the first-answer-token entropy > ``stop_tau``).
        stop_tau: the "confidence" rule's threshold, in nats.
        min_rounds: zoom rounds accepted before the stop rule applies, at most ``max_rounds`` (0 =
            the paper's loop, which may answer from the page alone when the first zoom does not
            lower the spatial entropy).
        legible_scale: the model's legible scale in pixels per PDF point. When set, crops are
            windows centred on a region and its peak, rendered at this scale, at most
            ``crop_pixels`` wide and ``crop_window_pt`` points tall; a wider region gets several
            windows (up to ``top_k`` in all); later rounds re-centre, they never shrink below the
            window (``imaging.legible_crops``). ``crop_page_side``, ``min_crop`` and ``crop_pad``
            in y are then unused. None = the paper's padded region crops.
        crop_window_pt: the window's height in points (with ``legible_scale``).
        max_windows: legible windows one region may get when it is wider than one window (with
            ``legible_scale``); each window is one more image the answer reads, so fewer windows
            answer faster and see less of a wide region.
        answer_round: which accepted round answers: "last" (the paper) or "confident" (the one
            whose first-answer-token entropy is lowest; later rounds win ties).
        read_scales: more views of the answer (with ``legible_scale``): the answering windows are
            also cut around the same regions and peaks at these multiples of the legible scale
            (0.9 = 10% fewer pixels per point, a window 11% wider), each view is read greedily,
            and the answer is the candidate whose log-likelihood summed over all the views (the
            legible scale's included) is highest. Empty = one read (the paper).
        answer_page: whether the answer step reads the page view beside the answering crops
            ([page, crops], the paper) or the crops alone (a prompt of its own; a small reader
            that cannot read values on the page view may read its crops better alone). Rounds
            that map are unchanged: they always see the page view.
    """

    sigma: float = 1.5
    threshold: ThresholdRule = "elbow"
    threshold_fraction: float = 0.5
    top_k: int = 3
    se_variant: SEVariant = "smoothed"
    max_rounds: int = 3
    max_new_tokens: int = 32
    crop_pixels: int = 448
    crop_page_side: int | None = None
    min_crop: float = 0.05
    crop_pad: float = 0.1
    stop_rule: StopRule = "spatial_entropy"
    stop_tau: float = 0.5
    min_rounds: int = 0
    legible_scale: float | None = None
    crop_window_pt: float = 72.0
    answer_round: AnswerRound = "confident"
    max_windows: int = 3
    read_scales: tuple[float, ...] = ()
    answer_page: bool = True

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.threshold not in ("elbow", "fraction"):
            raise ValueError(f"threshold must be 'elbow' or 'fraction', got {self.threshold!r}")
        if not 0 < self.threshold_fraction < 1:
            raise ValueError(f"threshold_fraction must be in (0, 1), got {self.threshold_fraction}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.se_variant not in ("smoothed", "llava"):
            raise ValueError(f"se_variant must be 'smoothed' or 'llava', got {self.se_variant!r}")
        if self.max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {self.max_rounds}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.crop_pixels < 28:
            raise ValueError(f"crop_pixels must be >= 28, got {self.crop_pixels}")
        if self.crop_page_side is not None and self.crop_page_side < 28:
            raise ValueError(f"crop_page_side must be >= 28 or None, got {self.crop_page_side}")
        if not 0 < self.min_crop <= 1:
            raise ValueError(f"min_crop must be in (0, 1], got {self.min_crop}")
        if not 0 <= self.crop_pad <= 1:
            raise ValueError(f"crop_pad must be in [0, 1], got {self.crop_pad}")
        if self.stop_rule not in STOP_RULES:
            raise ValueError(
                f"stop_rule must be one of {', '.join(STOP_RULES)}, got {self.stop_rule!r}"
            )
        if self.min_rounds < 0:
            raise ValueError(f"min_rounds must be >= 0, got {self.min_rounds}")
        if not self.stop_tau >= 0:
            raise ValueError(f"stop_tau must be >= 0, got {self.stop_tau}")
        if self.legible_scale is not None and not self.legible_scale > 0:
            raise ValueError(f"legible_scale must be > 0 px/pt or None, got {self.legible_scale}")
        if not self.crop_window_pt > 0:
            raise ValueError(f"crop_window_pt must be > 0, got {self.crop_window_pt}")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {self.max_windows}")
        scales = tuple(float(x) for x in self.read_scales)  # JSON gives a list
        object.__setattr__(self, "read_scales", scales)
        if any(not x > 0 or x == 1.0 for x in scales) or len(set(scales)) != len(scales):
            raise ValueError(
                f"read_scales must be distinct factors > 0 other than 1 (the legible scale "
                f"itself is always read), got {list(scales)}"
            )
        if scales and self.legible_scale is None:
            raise ValueError("read_scales needs legible_scale (views are multiples of it)")
        if self.answer_round not in ANSWER_ROUNDS:
            raise ValueError(
                f"answer_round must be one of {', '.join(ANSWER_ROUNDS)}, got {self.answer_round!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """A stable 16-hex-digit hash of the knobs (sorted JSON, sha256)."""
        knobs = {k: v for k, v in self.to_dict().items() if _HASH_NEUTRAL.get(k, ...) != v}
        blob = json.dumps(knobs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> EgrConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_adapter(cls, defaults: dict[str, Any], **overrides: Any) -> EgrConfig:
        """The adapter's defaults, then explicit overrides (None values are ignored)."""
        merged = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**merged)
