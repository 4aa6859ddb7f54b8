"""Option types shared by several commands."""

from __future__ import annotations

from enum import StrEnum


class StopRuleOption(StrEnum):
    """``--stop-rule`` choices (``egr_core.config.EgrConfig.stop_rule``)."""

    spatial_entropy = "spatial_entropy"
    fixed = "fixed"
    confidence = "confidence"
