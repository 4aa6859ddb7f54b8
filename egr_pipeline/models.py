"""Model loading for the orchestration layer: once per worker process, never per task.

``load_model`` is cached per process (``functools.cache`` behind a lock, so two threads of one
worker cannot both load). Every real load bumps :data:`LOAD_COUNT` and, when the environment
variable ``EGR_MODEL_LOAD_LOG`` names a directory, appends a line to ``<dir>/loads-<pid>.txt``;
tests read either to prove that each worker process loaded the model exactly once.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

from egr_core.config import EgrConfig
from egr_core.errors import ModelLoadError

logger = logging.getLogger(__name__)

#: Real (uncached) model loads performed by this process.
LOAD_COUNT = 0
_LOCK = threading.Lock()


def load_model(model_id: str, device: str = "cpu", dtype: str = "auto") -> Any:
    """The loaded VLM (``egr_core.loading.LoadedVLM``) for ``model_id``, loaded at most once here.

    Args:
        model_id: hub id or local checkpoint directory.
        device: "cpu", "cuda", "cuda:N" or "auto" (cuda when available).
        dtype: torch dtype name or "auto".

    Returns:
        The process-wide ``LoadedVLM``; weights frozen, eval mode.
    """
    with _LOCK:
        return _load_cached(model_id, _resolve_device(device), dtype)


@functools.cache
def _load_cached(model_id: str, device: str, dtype: str) -> Any:
    global LOAD_COUNT
    from egr_core.loading import load_vlm

    LOAD_COUNT += 1
    log_dir = os.environ.get("EGR_MODEL_LOAD_LOG")
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(log_dir) / f"loads-{os.getpid()}.txt", "a", encoding="utf-8") as fh:
            fh.write(f"{model_id}\t{device}\t{dtype}\n")
    logger.info(
        "loading model %s on %s (load #%d in pid %d)", model_id, device, LOAD_COUNT, os.getpid()
    )
    return load_vlm(model_id, device=device, dtype=dtype)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: Entry-point group where an installed package names the model used when a run gives none
#: (``egr`` registers its shipped reader there; see pyproject.toml).
DEFAULT_MODEL_GROUP = "egr.default_model"


def default_model() -> str:
    """The model of a run that names none: the first entry point of :data:`DEFAULT_MODEL_GROUP`
    (by name), called with no arguments. The engine never imports the package that provides it.

    Raises:
        ModelLoadError: no installed package provides a default model.
    """
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=DEFAULT_MODEL_GROUP), key=lambda ep: ep.name)
    if not found:
        raise ModelLoadError(
            "(default)",
            f"no model given and no installed package provides one ({DEFAULT_MODEL_GROUP} "
            "entry point); pass a model id or checkpoint directory",
        )
    return str(found[0].load()())


def set_threads(n: int) -> None:
    """Torch's intra-op threads for this process's model work (a process-wide setting)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def load_count() -> int:
    """Loads performed by this process so far (for ``dask.distributed.Client.run``)."""
    return LOAD_COUNT


def model_type_of(model_id: str) -> str:
    """The Hugging Face ``model_type`` of a checkpoint, read from its config only (no weights).

    Raises:
        ModelLoadError: no such checkpoint, or the hub is unreachable for a hub id.
    """
    from egr_core.loading import model_config

    return str(model_config(model_id).model_type)


def resolve_config(model_id: str, base: EgrConfig | None = None, **overrides: Any) -> EgrConfig:
    """The effective method config of a run: ``base`` (or the adapter's defaults updated with the
    checkpoint's own ``egr_config.json``), then overrides.

    Known before any weights are loaded, so the planner can key done work on its hash.
    """
    if base is not None:
        return base.replace(**{k: v for k, v in overrides.items() if v is not None})
    from egr_core.adapters import get_adapter
    from egr_core.loading import default_config

    config: EgrConfig = default_config(get_adapter(model_type_of(model_id)), model_id, **overrides)
    return config
