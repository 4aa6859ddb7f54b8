"""Load a VLM checkpoint (hub id or local directory) with its processor and adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from egr_core.adapters import VLMAdapter, get_adapter

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class LoadedVLM:
    """A loaded, frozen model ready for grounding.

    Attributes:
        model: in eval mode, ``requires_grad`` False on every parameter.
        processor: the matching ``AutoProcessor``.
        adapter: the registered adapter for ``model_type``.
        model_id: what was asked for (hub id or path).
        model_type: HF ``config.model_type``.
    """

    model: Any
    processor: Any
    adapter: VLMAdapter
    model_id: str
    model_type: str


def resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """``"auto"``, a torch dtype, or one of float32/float16/bfloat16 (and short forms)."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}") from None


def load_vlm(
    model_id_or_path: str, device: str = "cpu", dtype: str | torch.dtype = "auto"
) -> LoadedVLM:
    """Load model + processor via the Auto classes and pick the adapter by ``model_type``.

    The config is read first, so an unsupported architecture fails before any weights load.

    Args:
        model_id_or_path: hub id or local directory (``save_pretrained`` layout).
        device: torch device string ("cpu", "cuda", "cuda:1").
        dtype: "auto" (the checkpoint's), a torch dtype or its name.

    Raises:
        UnsupportedModelError: no adapter serves the checkpoint's model_type.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(model_id_or_path)
    adapter = get_adapter(config.model_type)
    model = AutoModelForImageTextToText.from_pretrained(
        model_id_or_path, dtype=resolve_dtype(dtype)
    )
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    processor = AutoProcessor.from_pretrained(model_id_or_path)
    return LoadedVLM(model, processor, adapter, model_id_or_path, config.model_type)
