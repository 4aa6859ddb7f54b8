"""EgrConfig: validation and provenance hashes."""

from __future__ import annotations

import pytest

from egr_core.config import EgrConfig


def test_hash_changes_with_every_knob() -> None:
    base = EgrConfig()
    changed = [
        base.replace(sigma=2.0), base.replace(top_k=2), base.replace(stop_rule="fixed"),
        base.replace(stop_rule="confidence"), base.replace(stop_rule="confidence", stop_tau=0.2),
    ]  # fmt: skip
    hashes = {c.config_hash() for c in changed}
    assert base.config_hash() not in hashes and len(hashes) == len(changed)


def test_knobs_added_later_leave_the_hash_of_old_configs_alone() -> None:
    # the hash of a config that uses only the first release's knobs is the sha256 of their JSON
    import hashlib
    import json

    # (answer_round's default changed the behaviour, so the first release's is "last")
    cfg = EgrConfig(sigma=2.5, threshold="fraction", answer_round="last")
    later = ("stop_rule", "stop_tau", "crop_page_side", "min_rounds")
    later += ("legible_scale", "crop_window_pt", "answer_round", "max_windows", "read_scales")
    later += ("answer_page",)
    first_release = {k: v for k, v in cfg.to_dict().items() if k not in later}
    blob = json.dumps(first_release, sort_keys=True, separators=(",", ":"))
    assert cfg.config_hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert EgrConfig(sigma=2.5, threshold="fraction").config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"stop_rule": "never"}, "stop_rule"),
        ({"stop_tau": -1.0}, "stop_tau"),
        ({"min_rounds": -1}, "min_rounds"),
    ],
)
def test_bad_stop_knobs_are_named(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EgrConfig(**knobs)  # type: ignore[arg-type]


def test_fixed_scale_crops_keep_text_one_size_whatever_the_region() -> None:
    from egr_core.imaging import crop_long_side
    from egr_core.types import Box

    page = (850, 1100)  # portrait, long side = height
    cfg = EgrConfig(crop_pixels=616, crop_page_side=3960)
    small, large = Box(0.1, 0.1, 0.2, 0.15), Box(0.1, 0.1, 0.3, 0.2)  # large = 2x small
    a, b = crop_long_side(small, page, cfg), crop_long_side(large, page, cfg)
    assert b == 2 * a or abs(b - 2 * a) <= 1  # pixels per page unit are the same
    assert a == round(3960 * 0.1 * 850 / 1100)  # the long side of this box is its width
    assert crop_long_side(Box(0.0, 0.0, 1.0, 1.0), page, cfg) == 616  # capped by crop_pixels
    assert crop_long_side(Box(0.0, 0.0, 0.001, 0.001), page, cfg) == 28  # one token at least
    assert crop_long_side(large, page, EgrConfig(crop_pixels=616)) == 616  # off: fixed size


def test_min_rounds_above_max_rounds_is_a_cap_not_an_error() -> None:
    # a checkpoint asking for one zoom round must still allow the plain baseline (max_rounds 0)
    assert EgrConfig(min_rounds=1, max_rounds=0).max_rounds == 0


def test_read_scales_come_from_json_lists_and_are_checked() -> None:
    cfg = EgrConfig(legible_scale=5.5, read_scales=[0.9, 1.1])  # type: ignore[arg-type]
    assert cfg.read_scales == (0.9, 1.1)  # a tuple, as from Python
    assert cfg.config_hash() == EgrConfig(legible_scale=5.5, read_scales=(0.9, 1.1)).config_hash()
    assert cfg.config_hash() != EgrConfig(legible_scale=5.5).config_hash()
    for bad in ([1.0], [0.9, 0.9], [0.0], [-0.5]):
        with pytest.raises(ValueError, match="read_scales must be distinct factors"):
            EgrConfig(legible_scale=5.5, read_scales=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="read_scales needs legible_scale"):
        EgrConfig(read_scales=(0.9,))
