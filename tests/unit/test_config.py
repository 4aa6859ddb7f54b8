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

    cfg = EgrConfig(sigma=2.5, threshold="fraction")
    first_release = {k: v for k, v in cfg.to_dict().items() if k not in ("stop_rule", "stop_tau")}
    blob = json.dumps(first_release, sort_keys=True, separators=(",", ":"))
    assert cfg.config_hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("knobs", "message"),
    [({"stop_rule": "never"}, "stop_rule"), ({"stop_tau": -1.0}, "stop_tau")],
)
def test_bad_stop_knobs_are_named(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EgrConfig(**knobs)  # type: ignore[arg-type]
