"""Adapter registry keyed by HF ``config.model_type``.

Adapter modules register themselves with :func:`register` when imported; this package imports the
modules listed in ``_ADAPTER_MODULES`` explicitly, so the registry is complete after
``import egr_core.adapters``.
"""

from __future__ import annotations

import importlib
from typing import Any

from egr_core.adapters.base import PreparedInputs, VLMAdapter
from egr_core.errors import UnsupportedModelError

_REGISTRY: dict[str, type] = {}

_ADAPTER_MODULES = ["qwen_vl", "llava", "llava_next", "internvl", "idefics3"]


def register(adapter_cls: type) -> type:
    """Register an adapter class under each of its ``model_types``; usable as a decorator.

    Raises:
        ValueError: the class declares no model types, or a type is already taken by another class.
    """
    types = tuple(getattr(adapter_cls, "model_types", ()))
    if not types:
        raise ValueError(f"{adapter_cls.__name__} declares no model_types")
    for t in types:
        prev = _REGISTRY.get(t)
        if prev is not None and prev is not adapter_cls:
            raise ValueError(
                f"model_type {t!r} is already served by {prev.__name__}, not {adapter_cls.__name__}"
            )
        _REGISTRY[t] = adapter_cls
    return adapter_cls


def supported_model_types() -> list[str]:
    """The registered HF model types, sorted."""
    return sorted(_REGISTRY)


def model_type_of(model_or_model_type: Any) -> str:
    """``config.model_type`` of a model (or config), or the string itself."""
    if isinstance(model_or_model_type, str):
        return model_or_model_type
    config = getattr(model_or_model_type, "config", model_or_model_type)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise TypeError(f"cannot find config.model_type on {type(model_or_model_type).__name__}")
    return model_type


def get_adapter(model_or_model_type: Any) -> VLMAdapter:
    """A fresh adapter instance for a model, a config or a model_type string.

    Raises:
        UnsupportedModelError: no adapter serves that model type (lists the supported ones).
    """
    model_type = model_type_of(model_or_model_type)
    cls = _REGISTRY.get(model_type)
    if cls is None:
        raise UnsupportedModelError(model_type, supported_model_types())
    return cls()


def _import_adapters() -> None:
    """Import every adapter module strictly: a broken adapter is an error, never skipped."""
    for name in _ADAPTER_MODULES:
        importlib.import_module(f"{__name__}.{name}")


_import_adapters()

__all__ = [
    "PreparedInputs",
    "VLMAdapter",
    "get_adapter",
    "model_type_of",
    "register",
    "supported_model_types",
]
