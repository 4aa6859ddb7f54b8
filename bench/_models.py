"""Model names the benchmarks accept: ``reader`` (the shipped reference reader), ``tiny`` (a tiny
random Qwen2.5-VL built offline into ``tmp``), or a checkpoint directory / hub id as given."""

from __future__ import annotations

from pathlib import Path


def resolve_model(name: str, tmp: Path) -> str:
    """The checkpoint path (or id) for a benchmark's ``--model`` value."""
    if name == "reader":
        from egr.reader import default_model_path

        return default_model_path()
    if name == "tiny":
        from egr.tiny import build_tiny

        return str(build_tiny("qwen2_5_vl", tmp / "tiny-qwen2_5_vl"))
    return name
