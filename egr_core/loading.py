"""Load a VLM checkpoint (hub id or local directory) with its processor and adapter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from egr_core.adapters import VLMAdapter, get_adapter
from egr_core.errors import ModelLoadError

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
    from transformers import AutoModelForImageTextToText, AutoProcessor

    config = model_config(model_id_or_path)
    adapter = get_adapter(config.model_type)
    model: Any = AutoModelForImageTextToText.from_pretrained(
        model_id_or_path, dtype=resolve_dtype(dtype)
    )
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    processor = AutoProcessor.from_pretrained(model_id_or_path)
    return LoadedVLM(model, processor, adapter, model_id_or_path, config.model_type)


def _looks_local(model_id_or_path: str) -> bool:
    """A path rather than a hub id: absolute, relative with a dot, home-relative, or existing."""
    p = model_id_or_path
    return p.startswith(("/", "./", "../", "~", "\\")) or Path(p).exists() or p.count("/") > 1


def model_config(model_id_or_path: str) -> Any:
    """The checkpoint's ``PretrainedConfig`` (no weights), or a :class:`ModelLoadError` that says
    plainly what is wrong: no such directory, a directory without ``config.json``, or a hub id
    that is neither cached nor reachable.
    """
    from transformers import AutoConfig

    if not model_id_or_path or not model_id_or_path.strip():
        raise ModelLoadError(model_id_or_path, "empty model id")
    if _looks_local(model_id_or_path):
        path = Path(model_id_or_path).expanduser()
        if not path.is_dir():
            raise ModelLoadError(model_id_or_path, "no such checkpoint directory")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                model_id_or_path,
                "the directory has no config.json (not a save_pretrained checkpoint)",
            )
    try:
        return AutoConfig.from_pretrained(model_id_or_path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            model_id_or_path,
            "not a local checkpoint and not loadable from the model hub (offline, or no such "
            f"repository): {first}",
        ) from exc


#: A checkpoint directory may carry the EGG knobs its authors recommend in this file (JSON object
#: of ``EgrConfig`` fields); they take precedence over the adapter's family defaults.
EGG_DEFAULTS_FILE = "egr_config.json"


def checkpoint_egg_defaults(model_id_or_path: str) -> dict[str, Any]:
    """The ``egr_config.json`` knobs of a local checkpoint directory ({} when it has none)."""
    path = Path(model_id_or_path).expanduser() / EGG_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        knobs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            model_id_or_path, f"{EGG_DEFAULTS_FILE} is not valid JSON: {exc}"
        ) from exc
    if not isinstance(knobs, dict):
        raise ModelLoadError(model_id_or_path, f"{EGG_DEFAULTS_FILE} must hold a JSON object")
    return knobs


def default_config(vlm_or_adapter: Any, model_id_or_path: str, **overrides: Any) -> Any:
    """The effective ``EgrConfig``: adapter family defaults, then the checkpoint's own
    ``egr_config.json``, then explicit ``overrides`` (None values are ignored)."""
    from egr_core.config import EgrConfig

    adapter = getattr(vlm_or_adapter, "adapter", vlm_or_adapter)
    base = {
        **dict(getattr(adapter, "config_defaults", {})),
        **checkpoint_egg_defaults(model_id_or_path),
    }
    return EgrConfig.for_adapter(base, **overrides)
