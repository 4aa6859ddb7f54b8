"""egr: the command-line product around egr_core (CLI, tiny-model builders, shipped assets)."""

from __future__ import annotations

from egr_core import __version__

__all__ = ["__version__"]
