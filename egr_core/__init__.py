"""egr_core: Entropy-Gradient Grounding over documents. Pure library: no Prefect, no env, no I/O.

The public API is re-exported here lazily (PEP 562), so ``import egr_core`` (and ``egr --help``)
does not import torch or transformers until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # method object and loading
    "EntropyGradientGrounding": "egr_core.explain",
    "load_vlm": "egr_core.loading",
    "LoadedVLM": "egr_core.loading",
    # config, errors
    "EgrConfig": "egr_core.config",
    "EgrError": "egr_core.errors",
    "InputError": "egr_core.errors",
    "NonFiniteEntropyError": "egr_core.errors",
    "TokenLayoutMismatchError": "egr_core.errors",
    "UnsupportedModelError": "egr_core.errors",
    "EmptyRelevanceError": "egr_core.errors",
    # types
    "Box": "egr_core.types",
    "GridSpan": "egr_core.types",
    "TokenLayout": "egr_core.types",
    "Question": "egr_core.types",
    "RelevanceGrid": "egr_core.types",
    "Region": "egr_core.types",
    "ZoomRound": "egr_core.types",
    "GroundedAnswer": "egr_core.types",
    "Status": "egr_core.types",
    # adapters
    "VLMAdapter": "egr_core.adapters",
    "PreparedInputs": "egr_core.adapters",
    "get_adapter": "egr_core.adapters",
    "register": "egr_core.adapters",
    "supported_model_types": "egr_core.adapters",
    # crops
    "CropFn": "egr_core.imaging",
    "raster_crop_fn": "egr_core.imaging",
    # targets
    "next_token_entropy": "egr_core.targets",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'egr_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
