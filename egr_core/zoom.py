"""The zoom-and-reground loop (method.md section 3): pure control over two callables.

Round 0 maps the page view alone. Each further round cuts crops from the last *accepted* round's
top-K regions (page coordinates; a region found inside a crop is a smaller page box, so crops of
crops zoom deeper), maps [page, crops...] and compares its spatial entropy ``e`` with the accepted
one ``e_prev``: ``e >= e_prev`` stops the loop and keeps the previous crops ("stop and use previous
crop"); otherwise the round is accepted and replaces the previous crops. The loop also stops when a
round finds no region, and after ``max_rounds`` zoom rounds.

Stop reasons: "no_region" (the last round found nothing; the previous round's crops are kept, none
if it was round 0), "se_increase", "max_rounds".

``min_rounds`` zoom rounds are accepted before any stop rule applies (when they find a region):
for a model that cannot read the page view at all, the page-only round is never the answer.

Two other stop rules, for comparison and for models whose spatial entropy is uninformative
(``rule``): "fixed" accepts every round that finds a region, up to ``max_rounds``; "confidence"
zooms only while the accepted round's first-answer-token entropy is above ``tau`` nats (stop
reason "confident"), accepting every round that finds a region.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from egr_core.types import Box, Region

P = TypeVar("P")

STOP_SE_INCREASE = "se_increase"
STOP_MAX_ROUNDS = "max_rounds"
STOP_NO_REGION = "no_region"
STOP_CONFIDENT = "confident"
STOP_RULES = ("spatial_entropy", "fixed", "confidence")


@dataclass(frozen=True, slots=True)
class RoundOutcome(Generic[P]):
    """What one mapping round produced.

    Attributes:
        crops: the page boxes of the crops fed in this round (empty in round 0).
        regions: ranked top-K regions, page coordinates.
        spatial_entropy: SE of the block holding the top region.
        payload: whatever the caller wants to keep (grids, embeddings, timings).
        entropy: first-answer-token entropy of the round (nats; the "confidence" rule's signal).
    """

    crops: tuple[Box, ...]
    regions: tuple[Region, ...]
    spatial_entropy: float
    payload: P
    entropy: float = float("nan")


@dataclass(frozen=True, slots=True)
class ZoomTrail(Generic[P]):
    """Every round run, which one was accepted last, and why the loop stopped."""

    rounds: tuple[RoundOutcome[P], ...]
    accepted: int  # index into rounds of the last accepted round (0 = page only)
    stop_reason: str

    @property
    def final(self) -> RoundOutcome[P]:
        """The accepted round whose crops the answer uses."""
        return self.rounds[self.accepted]


@dataclass(frozen=True, slots=True)
class Step:
    """A round the loop asks for: map ``crops`` (``light``: forward only, no map) as ``round``."""

    round: int
    crops: tuple[Box, ...]
    light: bool = False


#: A loop in steps: yields the rounds it needs, is sent their outcomes, returns the trail.
ZoomSteps = Generator[Step, RoundOutcome[P], ZoomTrail[P]]


def zoom_steps(
    next_crops: Callable[[Sequence[Region]], tuple[Box, ...]],
    max_rounds: int,
    rule: str = "spatial_entropy",
    tau: float = 0.5,
    min_rounds: int = 0,
    light: bool = False,
) -> ZoomSteps[P]:
    """The zoom loop as a generator: it yields each :class:`Step` it needs and is sent that
    round's :class:`RoundOutcome`; its return value is the trail. A caller can so advance many
    questions' loops in lockstep and run each round of all of them as one batch.

    Round 0 maps the page; then it zooms while the stop rule allows (default: while the spatial
    entropy strictly decreases).

    Args:
        next_crops: top-K regions of the accepted round -> the page boxes to crop next.
        max_rounds: zoom rounds after round 0 (>= 1 here; 0 is plain mode, handled by callers).
        rule: "spatial_entropy" (the paper's), "fixed" or "confidence" (see the module text).
        tau: the "confidence" rule's entropy threshold in nats.
        min_rounds: zoom rounds accepted before the stop rule applies (<= ``max_rounds``).
        light: the last round may be a light step (no map: a forward for the round's entropy
            only) when nothing reads its map: no further round would cut crops from it and the
            stop rule does not compare its spatial entropy. That round is accepted.
    """
    if max_rounds < 1:
        raise ValueError(f"zoom_loop needs max_rounds >= 1, got {max_rounds}")
    if rule not in STOP_RULES:
        raise ValueError(f"unknown stop rule {rule!r}; expected one of {', '.join(STOP_RULES)}")
    rounds = [(yield Step(0, ()))]
    if not rounds[0].regions:
        return ZoomTrail(tuple(rounds), 0, STOP_NO_REGION)
    accepted = 0
    for i in range(1, max_rounds + 1):
        free = i <= min_rounds  # the stop rule does not apply yet
        if rule == "confidence" and not free and rounds[accepted].entropy <= tau:
            return ZoomTrail(tuple(rounds), accepted, STOP_CONFIDENT)
        crops = next_crops(rounds[accepted].regions)
        if light and i == max_rounds and (free or rule != "spatial_entropy"):
            rounds.append((yield Step(i, crops, light=True)))
            return ZoomTrail(tuple(rounds), i, STOP_MAX_ROUNDS)
        outcome = yield Step(i, crops)
        rounds.append(outcome)
        if not outcome.regions:
            return ZoomTrail(tuple(rounds), accepted, STOP_NO_REGION)
        worse = outcome.spatial_entropy >= rounds[accepted].spatial_entropy
        if rule == "spatial_entropy" and worse and not free:
            return ZoomTrail(tuple(rounds), accepted, STOP_SE_INCREASE)
        accepted = i
    return ZoomTrail(tuple(rounds), accepted, STOP_MAX_ROUNDS)


def zoom_loop(
    run_round: Callable[[int, tuple[Box, ...]], RoundOutcome[P]],
    next_crops: Callable[[Sequence[Region]], tuple[Box, ...]],
    max_rounds: int,
    rule: str = "spatial_entropy",
    tau: float = 0.5,
    min_rounds: int = 0,
    light_round: Callable[[int, tuple[Box, ...]], RoundOutcome[P]] | None = None,
) -> ZoomTrail[P]:
    """:func:`zoom_steps` for one question, run to the end with callables.

    Args:
        run_round: ``(round_index, crop_boxes) -> RoundOutcome``; round 0 gets no crops.
        light_round: ``(round_index, crop_boxes) -> RoundOutcome`` without a map, for the light
            last round (None: every round maps).
        The rest: see :func:`zoom_steps`.

    Returns:
        The trail of rounds, the accepted index and the stop reason.
    """
    steps: ZoomSteps[P] = zoom_steps(
        next_crops, max_rounds, rule, tau, min_rounds, light=light_round is not None
    )
    step = next(steps)
    while True:
        run = light_round if step.light and light_round is not None else run_round
        try:
            step = steps.send(run(step.round, step.crops))
        except StopIteration as done:
            return done.value


def answer_round(trail: ZoomTrail[P], rule: str, min_rounds: int = 0) -> int:
    """Which round's inputs the answer is generated from.

    "last": the last accepted round (the paper). "confident": among the accepted rounds (the
    first ``min_rounds`` zoom rounds are always candidates over the page-only round), the one
    whose first-answer-token entropy is lowest; a later round wins a tie, so a zoom that did not
    make the model less sure still answers from the crops.
    """
    if rule == "last":
        return trail.accepted
    first = min(min_rounds, trail.accepted)
    best = first
    for i in range(first, trail.accepted + 1):
        if trail.rounds[i].entropy <= trail.rounds[best].entropy:
            best = i
    return best
