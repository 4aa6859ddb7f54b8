"""Stop-rule semantics of the zoom loop on scripted spatial-entropy sequences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from egr_core.types import Box, Region
from egr_core.zoom import RoundOutcome, zoom_loop


class Script:
    """run_round/next_crops doubles: round i returns SE ses[i] (None = no region)."""

    def __init__(
        self, ses: Sequence[float | None], entropies: Sequence[float] | None = None
    ) -> None:
        self.ses = list(ses)
        self.entropies = list(entropies) if entropies is not None else [math.nan] * len(ses)
        self.calls: list[tuple[int, tuple[Box, ...]]] = []
        self.crop_inputs: list[tuple[Region, ...]] = []

    def run_round(self, i: int, crops: tuple[Box, ...]) -> RoundOutcome[str]:
        self.calls.append((i, crops))
        se = self.ses[i]
        regs = () if se is None else (Region(Box(0.0, 0.0, 0.5 / (i + 1), 0.5), 1.0, 0, i),)
        se_value = math.inf if se is None else se
        return RoundOutcome(crops, regs, se_value, f"payload{i}", self.entropies[i])

    def next_crops(self, top: Sequence[Region]) -> tuple[Box, ...]:
        self.crop_inputs.append(tuple(top))
        return tuple(r.box for r in top)


def run(
    ses: Sequence[float | None],
    max_rounds: int,
    entropies: Sequence[float] | None = None,
    **rule: object,
):
    s = Script(ses, entropies)
    return s, zoom_loop(s.run_round, s.next_crops, max_rounds, **rule)


def test_increase_stops_and_keeps_previous_crops() -> None:
    s, trail = run([1.0, 0.5, 0.7, 0.1], max_rounds=5)
    assert trail.stop_reason == "se_increase"
    assert len(trail.rounds) == 3 and trail.accepted == 1
    assert trail.final.payload == "payload1"
    assert trail.final.crops == s.calls[1][1]  # the crops fed into the accepted round


def test_equal_entropy_counts_as_increase() -> None:
    _, trail = run([1.0, 1.0], max_rounds=3)
    assert (trail.stop_reason, trail.accepted, trail.final.crops) == ("se_increase", 0, ())


def test_strict_decrease_runs_to_the_cap() -> None:
    s, trail = run([3.0, 2.0, 1.0, 0.5, 0.1], max_rounds=3)
    assert trail.stop_reason == "max_rounds"
    assert len(trail.rounds) == 4 and trail.accepted == 3
    assert [i for i, _ in s.calls] == [0, 1, 2, 3]


def test_crops_come_from_the_last_accepted_round_and_zoom_deeper() -> None:
    s, _ = run([3.0, 2.0, 1.0], max_rounds=2)
    assert s.calls[0][1] == ()
    assert s.crop_inputs[0][0].round == 0 and s.crop_inputs[1][0].round == 1
    assert s.calls[2][1][0].width < s.calls[1][1][0].width  # a crop of a crop is smaller


def test_no_region_in_round_zero() -> None:
    s, trail = run([None, 1.0], max_rounds=3)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("no_region", 0, 1)
    assert s.crop_inputs == []


def test_no_region_later_keeps_previous_crops() -> None:
    _, trail = run([3.0, 2.0, None], max_rounds=5)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("no_region", 1, 3)


def test_infinite_round_zero_entropy_accepts_any_finite_round() -> None:
    _, trail = run([math.inf, 5.0, math.inf], max_rounds=3)
    assert (trail.stop_reason, trail.accepted) == ("se_increase", 1)


def test_zero_rounds_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        run([1.0], max_rounds=0)


def test_fixed_rule_accepts_rounds_whatever_their_spatial_entropy() -> None:
    s, trail = run([1.0, 2.0, 3.0, 4.0], max_rounds=2, rule="fixed")
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("max_rounds", 2, 3)
    assert s.crop_inputs[1][0].round == 1  # round 2 zooms into round 1's regions


def test_fixed_rule_still_stops_when_a_round_finds_nothing() -> None:
    _, trail = run([1.0, 2.0, None], max_rounds=3, rule="fixed")
    assert (trail.stop_reason, trail.accepted) == ("no_region", 1)


def test_confidence_rule_zooms_while_the_answer_is_uncertain() -> None:
    # entropy 2.0 on the page, 1.0 after one zoom, 0.2 after two: stop before a third
    s, trail = run([1.0, 2.0, 3.0, 4.0], 5, [2.0, 1.0, 0.2, 0.1], rule="confidence", tau=0.5)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("confident", 2, 3)
    assert [i for i, _ in s.calls] == [0, 1, 2]


def test_confidence_rule_does_not_zoom_a_confident_page() -> None:
    s, trail = run([1.0, 0.5], 3, [0.3, 0.1], rule="confidence", tau=0.5)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("confident", 0, 1)
    assert s.crop_inputs == []


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown stop rule 'sometimes'"):
        run([1.0, 0.5], max_rounds=2, rule="sometimes")


def test_min_rounds_accepts_the_first_zoom_whatever_its_spatial_entropy() -> None:
    _, paper = run([1.0, 2.0, 1.5], max_rounds=3)
    assert (paper.stop_reason, paper.accepted) == ("se_increase", 0)  # the page alone
    _, trail = run([1.0, 2.0, 1.5, 1.8], max_rounds=3, min_rounds=1)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("se_increase", 2, 4)


def test_min_rounds_also_delays_the_confidence_stop() -> None:
    _, trail = run([1.0, 0.5, 0.4], 3, [0.1, 0.1, 0.1], rule="confidence", min_rounds=1)
    assert (trail.stop_reason, trail.accepted, len(trail.rounds)) == ("confident", 1, 2)


# ---------------------------------------------------------------- light last round, answer round


@pytest.mark.parametrize(
    ("rule", "min_rounds", "light"),
    [("fixed", 0, True), ("confidence", 0, True), ("spatial_entropy", 2, True),
     ("spatial_entropy", 0, False)],
)  # fmt: skip
def test_the_last_round_skips_its_map_when_nothing_reads_it(
    rule: str, min_rounds: int, light: bool
) -> None:
    s = Script([3.0, 2.0, 1.0], [2.0, 1.5, 1.0])
    lights: list[int] = []

    def light_round(i: int, crops: tuple[Box, ...]) -> RoundOutcome[str]:
        lights.append(i)
        return RoundOutcome(crops, (), math.nan, f"light{i}", s.entropies[i])

    trail = zoom_loop(
        s.run_round, s.next_crops, 2, rule=rule, tau=0.0, min_rounds=min_rounds,
        light_round=light_round,
    )  # fmt: skip
    assert lights == ([2] if light else [])
    assert [i for i, _ in s.calls] == ([0, 1] if light else [0, 1, 2])
    assert trail.accepted == 2 and trail.stop_reason == "max_rounds"
    assert trail.final.payload == ("light2" if light else "payload2")


def test_confident_answer_round_is_the_surest_accepted_round() -> None:
    from egr_core.zoom import answer_round

    _, trail = run([3.0, 2.0, 1.0, 0.5], max_rounds=3, entropies=[0.9, 0.2, 0.6, 0.4])
    assert trail.accepted == 3
    assert answer_round(trail, "last") == 3
    assert answer_round(trail, "confident") == 1
    # the page-only round cannot win while min_rounds keeps zoom rounds; ties go to later rounds
    _, tied = run([3.0, 2.0, 1.0], max_rounds=2, entropies=[0.1, 0.5, 0.5])
    assert answer_round(tied, "confident", min_rounds=0) == 0
    assert answer_round(tied, "confident", min_rounds=1) == 2
    # a rejected round (SE went up) is never the answer round
    _, rejected = run([3.0, 2.0, 2.5], max_rounds=3, entropies=[0.9, 0.8, 0.0])
    assert rejected.accepted == 1 and answer_round(rejected, "confident") == 1
