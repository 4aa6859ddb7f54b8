"""Regions and spatial entropy on hand-made maps with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from egr_core import regions


def test_elbow_threshold_hand_computed() -> None:
    # sorted [1, 2, 3, 10]: x = [0, 1/3, 2/3, 1], y = [0, 1/9, 2/9, 1] -> |x - y| max at index 2
    assert regions.elbow_threshold(np.array([[10.0, 1.0], [3.0, 2.0]])) == 3.0
    # eight zeros and two ones: the farthest point from the chord is the last zero
    assert regions.elbow_threshold(np.array([0.0] * 8 + [1.0, 1.0])) == 0.0


def test_elbow_threshold_flat_map_has_no_mask() -> None:
    flat = np.full((4, 4), 0.7)
    tau = regions.elbow_threshold(flat)
    assert tau == 0.7
    assert not (flat > tau).any()


def test_fraction_threshold() -> None:
    s = np.array([[0.0, 2.0], [4.0, 1.0]])
    assert regions.threshold(s, "fraction", 0.5) == 2.0
    assert regions.threshold(s, "fraction", 0.25) == 1.0
    with pytest.raises(ValueError, match="unknown threshold rule"):
        regions.threshold(s, "quantile")


def test_components_four_connected_and_scored_by_raw_map() -> None:
    raw = np.array(
        [
            [5.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 3.0],
            [0.0, 0.0, 1.0, 3.0],
        ]
    )
    smoothed = raw.copy()
    smoothed[0, 0] = 0.5  # the mask comes from the smoothed map, the score from the raw one
    comps = regions.components(raw, smoothed, tau=0.4)
    # (0,0) and (1,1) touch only diagonally: two 4-connected components
    assert [(c.r0, c.c0, c.r1, c.c1, c.score, c.n_cells) for c in comps] == [
        (2, 2, 3, 3, 7.0, 3),
        (0, 0, 0, 0, 5.0, 1),
        (1, 1, 1, 1, 2.0, 1),
    ]


def test_spatial_entropy_two_components_hand_computed() -> None:
    b = np.zeros((5, 5))
    b[0, 0], b[0, 1] = 1.0, 2.0  # component 1: sum 3
    b[4, 4] = 1.0  # component 2: sum 1
    p = np.array([0.75, 0.25])
    assert regions.spatial_entropy(b, tau=0.0) == pytest.approx(-(p * np.log(p)).sum())


def test_spatial_entropy_mass_below_threshold_keeps_p_unnormalised() -> None:
    b = np.zeros((4, 4))
    b[0, 0] = 3.0
    b[3, 3] = 1.0  # below tau: counts in the total, not as a component
    p = 0.75
    assert regions.spatial_entropy(b, tau=2.0) == pytest.approx(-p * math.log(p))


def test_spatial_entropy_uses_eight_connectivity() -> None:
    b = np.zeros((3, 3))
    b[0, 0] = b[1, 1] = 1.0  # diagonal neighbours: one 8-connected component with p = 1
    assert regions.spatial_entropy(b, tau=0.0) == 0.0
    b[2, 0] = 2.0  # touches (1, 1) diagonally as well: still one component
    assert regions.spatial_entropy(b, tau=0.0) == 0.0


def test_spatial_entropy_edge_cases() -> None:
    assert regions.spatial_entropy(np.zeros((3, 3)), tau=0.0) == math.inf
    assert regions.spatial_entropy(-np.ones((3, 3)), tau=0.0) == math.inf
    positive = np.full((3, 3), 1.0)
    assert regions.spatial_entropy(positive, tau=1.0) == 0.0  # no component above tau


def test_llava_se_base_hand_computed() -> None:
    s = np.array([[0.0, 0.0], [0.0, 8.0]])  # mean 2 -> B = relu(S - 4)
    np.testing.assert_array_equal(regions.se_base(s, "llava"), [[0.0, 0.0], [0.0, 4.0]])
    np.testing.assert_array_equal(regions.se_base(s, "smoothed"), s)


def test_smooth_sigma_zero_is_identity_and_sigma_spreads() -> None:
    m = np.zeros((7, 7))
    m[3, 3] = 1.0
    np.testing.assert_array_equal(regions.smooth(m, 0.0), m)
    s = regions.smooth(m, 1.0)
    assert s[3, 3] < 1.0 and s[3, 4] > 0 and np.unravel_index(np.argmax(s), s.shape) == (3, 3)
    assert s.sum() == pytest.approx(1.0, abs=1e-3)  # truncated at 4 sigma


def test_analyse_single_peak_fraction_rule() -> None:
    raw = np.zeros((8, 8))
    raw[2:4, 5:7] = 1.0  # a 2x2 block of evidence
    a = regions.analyse(raw, sigma=0.0, rule="fraction", fraction=0.5)
    assert a.tau == 0.5
    (c,) = a.components
    assert (c.r0, c.c0, c.r1, c.c1, c.score) == (2, 5, 3, 6, 4.0)
    assert a.spatial_entropy == 0.0  # all mass in one component: p = 1


def test_analyse_llava_variant_thresholds_b() -> None:
    raw = np.zeros((4, 4))
    raw[0, 0], raw[3, 3] = 6.0, 2.0  # mean 0.5 -> B = relu(S - 1) = 5 and 1
    a = regions.analyse(raw, sigma=0.0, rule="fraction", fraction=0.1, se_variant="llava")
    p = np.array([5.0, 1.0]) / 6.0  # tau on B = 0.5: both cells are components
    assert a.spatial_entropy == pytest.approx(-(p * np.log(p)).sum())


def test_single_component_holding_all_mass_has_zero_not_negative_zero() -> None:
    b = np.zeros((3, 3))
    b[1, 1] = 2.0
    se = regions.spatial_entropy(b, tau=0.0)
    assert se == 0.0 and math.copysign(1.0, se) == 1.0
