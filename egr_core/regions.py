"""Regions and spatial entropy on one block's relevance map (method.md sections 2 and 3).

NumPy/SciPy only: every function here takes and returns plain arrays, so it can be tested on
hand-made maps. A "map" is a 2-D float array of raw scores, shape (R, C), in grid-cell units.

Choices where method.md is silent (recorded here, and in the config hash via the knobs):
- Smoothing uses ``scipy.ndimage.gaussian_filter`` with ``mode="nearest"`` and ``truncate=4``.
- The elbow is found on min-max normalised axes (index / (n-1), (v - v0) / (v_{n-1} - v0)), so the
  threshold does not depend on the arbitrary scale of gradient norms; a flat map has no elbow above
  its own value, hence no component.
- For the "llava" SE variant the threshold rule is applied to B itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from egr_core import layout
from egr_core.config import EgrConfig
from egr_core.types import Box, Region, RelevanceGrid

_FOUR = ndimage.generate_binary_structure(2, 1)  # 4-connectivity
_EIGHT = ndimage.generate_binary_structure(2, 2)  # 8-connectivity


@dataclass(frozen=True, slots=True)
class Component:
    """A connected component of a thresholded map, in grid cells (inclusive bounds)."""

    score: float  # sum of the raw map over the component's cells
    r0: int
    c0: int
    r1: int  # inclusive
    c1: int  # inclusive
    n_cells: int
    #: where the smoothed map peaks inside the component, in cell units (row, column; the centre
    #: of cell (r, c) is (r + 0.5, c + 0.5)): the centroid of the smoothed map over the 3 x 3
    #: cells of the component around its maximum, so a peak between two cells lies between them
    peak: tuple[float, float] = (0.5, 0.5)


def smooth(raw: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth a map in grid-cell units.

    Args:
        raw: (R, C) raw scores.
        sigma: standard deviation in cells; 0 returns a float64 copy.

    Returns:
        (R, C) float64 smoothed map.
    """
    m = np.asarray(raw, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a relevance map must be 2-D, got shape {m.shape}")
    if sigma <= 0:
        return m.copy()
    return ndimage.gaussian_filter(m, sigma=sigma, mode="nearest", truncate=4.0)


def elbow_threshold(values: np.ndarray) -> float:
    """Value at the elbow of the ascending-sorted values (farthest point from the chord).

    Args:
        values: any-shape array; flattened.

    Returns:
        The sorted value at the point farthest from the straight line joining the first and the
        last sorted values, both axes normalised to [0, 1]. A flat map returns its value.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())  # (n,) ascending
    n = v.size
    if n == 0:
        raise ValueError("elbow_threshold of an empty map")
    span = v[-1] - v[0]
    if n < 3 or not span > 0:
        return float(v[0])
    x = np.arange(n, dtype=np.float64) / (n - 1)  # (n,)
    y = (v - v[0]) / span  # (n,)
    # The chord runs from (0, 0) to (1, 1): distance = |x - y| / sqrt(2), constant irrelevant.
    i = int(np.argmax(np.abs(x - y)))
    return float(v[i])


def threshold(smoothed: np.ndarray, rule: str, fraction: float = 0.5) -> float:
    """The threshold tau of a smoothed map by the configured rule ("elbow" or "fraction")."""
    if rule == "elbow":
        return elbow_threshold(smoothed)
    if rule == "fraction":
        return float(fraction * np.max(smoothed))
    raise ValueError(f"unknown threshold rule {rule!r}; expected 'elbow' or 'fraction'")


def label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Label the connected components of a boolean mask (4- or 8-connectivity)."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    labels, n = ndimage.label(mask, structure=_FOUR if connectivity == 4 else _EIGHT)
    return labels, int(n)


def _peak(smoothed: np.ndarray, cells: np.ndarray) -> tuple[float, float]:
    """Sub-cell peak of ``smoothed`` inside the ``cells`` mask (see :attr:`Component.peak`)."""
    r, c = np.unravel_index(int(np.argmax(np.where(cells, smoothed, -np.inf))), cells.shape)
    r0, r1 = max(r - 1, 0), min(r + 2, cells.shape[0])
    c0, c1 = max(c - 1, 0), min(c + 2, cells.shape[1])
    w = np.where(cells[r0:r1, c0:c1], smoothed[r0:r1, c0:c1], 0.0)
    w = np.clip(w - w[w > 0].min() if (w > 0).any() else w, 0.0, None)  # relative to the rim
    if w.sum() <= 0:
        return (r + 0.5, c + 0.5)
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return (float((w * rows).sum() / w.sum()) + 0.5, float((w * cols).sum() / w.sum()) + 0.5)


def components(raw: np.ndarray, smoothed: np.ndarray, tau: float) -> list[Component]:
    """4-connected components of ``smoothed > tau``, scored by the sum of the *raw* map.

    Args:
        raw: (R, C) raw scores.
        smoothed: (R, C) smoothed scores (same shape).
        tau: threshold; cells strictly above it are in the mask.

    Returns:
        Components ordered by descending score (ties: top-left first).
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape != smoothed.shape:
        raise ValueError(f"raw {raw.shape} and smoothed {smoothed.shape} maps differ in shape")
    labels, n = label(smoothed > tau, 4)
    out: list[Component] = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        cells = labels == k  # (R, C) bool
        peak = _peak(smoothed, cells)
        out.append(
            Component(
                score=float(raw[cells].sum()),
                r0=sl[0].start,
                c0=sl[1].start,
                r1=sl[0].stop - 1,
                c1=sl[1].stop - 1,
                n_cells=int(cells.sum()),
                peak=peak,
            )
        )
    assert len(out) == n
    out.sort(key=lambda c: (-c.score, c.r0, c.c0))
    return out


def se_base(smoothed: np.ndarray, variant: str) -> np.ndarray:
    """The map B spatial entropy is computed on: S ("smoothed") or relu(S - 2 mean S) ("llava")."""
    if variant == "smoothed":
        return smoothed
    if variant == "llava":
        return np.maximum(smoothed - 2.0 * smoothed.mean(), 0.0)
    raise ValueError(f"unknown SE variant {variant!r}; expected 'smoothed' or 'llava'")


def spatial_entropy(base: np.ndarray, tau: float) -> float:
    """Spatial entropy of a map B thresholded at tau (8-connected components).

    p_k = sum of B over component k / sum of B over the whole map; SE = -sum_k p_k ln p_k (the p_k
    need not sum to 1). Sum of B <= 0 gives +inf; no component gives 0.

    Args:
        base: (R, C) the map B (see :func:`se_base`).
        tau: threshold; cells with B > tau form the components.
    """
    b = np.asarray(base, dtype=np.float64)
    total = float(b.sum())
    if not total > 0:
        return math.inf
    labels, n = label(b > tau, 8)
    if n == 0:
        return 0.0
    sums = ndimage.sum_labels(b, labels, index=np.arange(1, n + 1))  # (n,)
    p = np.asarray(sums, dtype=np.float64) / total
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 (p = 1) into 0.0


@dataclass(frozen=True, slots=True)
class BlockAnalysis:
    """What one block's map yields: smoothed map, threshold, components, spatial entropy."""

    smoothed: np.ndarray
    tau: float
    components: tuple[Component, ...]
    spatial_entropy: float


def analyse(
    raw: np.ndarray,
    *,
    sigma: float,
    rule: str,
    fraction: float = 0.5,
    se_variant: str = "smoothed",
) -> BlockAnalysis:
    """Smooth, threshold, find 4-connected components and compute SE for one block's raw map.

    Args:
        raw: (R, C) raw relevance scores of one block.
        sigma: Gaussian sigma in cells.
        rule: "elbow" or "fraction".
        fraction: the fraction for the "fraction" rule.
        se_variant: "smoothed" or "llava".
    """
    s = smooth(raw, sigma)
    tau = threshold(s, rule, fraction)
    comps = components(raw, s, tau)
    base = se_base(s, se_variant)
    tau_b = tau if se_variant == "smoothed" else threshold(base, rule, fraction)
    return BlockAnalysis(s, tau, tuple(comps), spatial_entropy(base, tau_b))


def top_regions(
    grids: Sequence[RelevanceGrid], cfg: EgrConfig, rnd: int
) -> tuple[list[Region], float]:
    """The top ``cfg.top_k`` regions of one round's relevance grids, pooled over the image blocks
    (ties: block order, then top-to-bottom, left-to-right), each with its sub-cell peak in page
    coordinates; and the spatial entropy of the block holding the top region (inf: no block)."""
    found: list[tuple[Region, int]] = []
    ses: list[float] = []
    for bi, block in enumerate(layout.blocks(grids)):
        a = analyse(
            block.scores,
            sigma=cfg.sigma,
            rule=cfg.threshold,
            fraction=cfg.threshold_fraction,
            se_variant=cfg.se_variant,
        )
        ses.append(a.spatial_entropy)
        for c in a.components:
            box = block.cell_box(c.r0, c.c0, c.r1, c.c1)
            rows, cols = block.scores.shape
            pr, pc = c.peak[0] / rows, c.peak[1] / cols  # in (0, 1): cell centres
            e = 1e-6
            pk = layout.cell_to_page(
                Box(pc - e, pr - e, pc + e, pr + e), block.image_box, block.source_box
            )
            peak = ((pk.x0 + pk.x1) / 2, (pk.y0 + pk.y1) / 2)
            found.append((Region(box, c.score, block.image_index, rnd, peak), bi))
    found.sort(key=lambda rb: (-rb[0].score, rb[1], rb[0].box.y0, rb[0].box.x0))
    top = found[: cfg.top_k]
    se = ses[top[0][1]] if top else (ses[0] if ses else float("inf"))
    return [r for r, _ in top], se
