"""Tiny random checkpoints, built offline from configs, in the exact on-disk format of the hub.

Each family module (``egr/tiny/<family>.py``) registers one builder per HF ``model_type``::

    @register_builder("llava", "llava_next")
    def build(out_dir: Path, model_type: str) -> None:  # save_pretrained model + processor
        ...

(A builder may also take ``out_dir`` alone when it serves one model type.)

``build_tiny(model_type, out_dir)`` runs it; the result loads back through
``AutoModelForImageTextToText.from_pretrained`` / ``AutoProcessor.from_pretrained``, the same path
users take for a hub id. Weights are random (seeded): the checkpoints exercise shapes and plumbing,
not answers.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Builder = Callable[..., None]  # fn(out_dir: Path, model_type: str) or fn(out_dir: Path)

#: Family modules under ``egr.tiny`` that register builders when imported.
_FAMILY_MODULES: list[str] = ["qwen", "llava", "internvl", "idefics3"]
#: Every family module must import; set False only while a new family is being written.
_STRICT_IMPORTS = True

_BUILDERS: dict[str, Builder] = {}
_loaded = False


def register_builder(*model_types: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(out_dir, model_type)`` as the tiny builder of ``model_types``."""

    def deco(fn: Builder) -> Builder:
        for mt in model_types:
            if mt in _BUILDERS and _BUILDERS[mt] is not fn:
                raise ValueError(f"a tiny builder for model_type {mt!r} is already registered")
            _BUILDERS[mt] = fn
        return fn

    return deco


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    for name in _FAMILY_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if _STRICT_IMPORTS or exc.name != f"{__name__}.{name}":
                raise
            logger.debug("tiny builder module egr.tiny.%s not present yet; skipped", name)
    _loaded = True


def tiny_model_types() -> list[str]:
    """The model types a tiny checkpoint can be built for, sorted."""
    _load_families()
    return sorted(_BUILDERS)


def build_tiny(model_type: str, out_dir: str | Path) -> Path:
    """Build a tiny random checkpoint of ``model_type`` into ``out_dir`` (created if missing).

    Args:
        model_type: an HF ``config.model_type``, e.g. ``"qwen2_5_vl"``.
        out_dir: target directory; model, processor, tokenizer and chat template are saved there.

    Returns:
        ``out_dir`` as a ``Path``, ready for ``from_pretrained``.

    Raises:
        ValueError: no builder is registered for ``model_type`` (the message lists the known ones).
    """
    _load_families()
    if model_type not in _BUILDERS:
        known = ", ".join(sorted(_BUILDERS)) or "(none)"
        raise ValueError(f"no tiny builder for model_type {model_type!r}; known: {known}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fn = _BUILDERS[model_type]
    if len(inspect.signature(fn).parameters) >= 2:
        fn(out, model_type)
    else:
        fn(out)
    return out


#: Width of every tiny decoder, and the seed of every tiny model's random weights.
HIDDEN = 64
SEED = 1234


def decoder_config(
    tok: Any, model_type: str | None = None, max_positions: int = 2048
) -> dict[str, Any]:
    """The small decoder all tiny checkpoints share: 2 layers, 4 heads (2 KV), width HIDDEN,
    the vocabulary rounded up to a multiple of 32; ``model_type`` is added when given."""
    cfg: dict[str, Any] = {
        "vocab_size": ((len(tok) + 31) // 32) * 32,
        "hidden_size": HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        "bos_token_id": None,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if model_type is not None:
        cfg = {"model_type": model_type, **cfg}
    return cfg


def save_checkpoint(out_dir: Path, config: Any, processor: Any, tok: Any) -> None:
    """Seeded random weights from ``config``, greedy generation defaults, and the processor,
    saved with ``save_pretrained`` (the layout ``from_pretrained`` reads for a hub id)."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    torch.manual_seed(SEED)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


__all__ = [
    "HIDDEN",
    "SEED",
    "build_tiny",
    "decoder_config",
    "register_builder",
    "save_checkpoint",
    "tiny_model_types",
]
