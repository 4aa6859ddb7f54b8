"""egr_core: Entropy-Gradient Grounding over documents. Pure library: no Prefect, no env, no I/O."""

from __future__ import annotations

__version__ = "0.1.0"
