"""Checks a command runs before it starts Prefect or loads weights, so a wrong model id or a bad
questions file fails in a second with one clear line instead of a flow-run traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_model(model: str) -> str:
    """The checkpoint's ``model_type``, after checking that an adapter serves it.

    Raises:
        ModelLoadError: no such checkpoint, or a hub id that is neither cached nor reachable.
        UnsupportedModelError: no adapter for the checkpoint's ``model_type`` (lists the known).
    """
    from egr_core.adapters import get_adapter
    from egr_pipeline.models import model_type_of

    model_type = model_type_of(model)
    get_adapter(model_type)
    return model_type


def check_questions(path: str, storage_options: dict[str, Any] | None = None) -> int:
    """The number of questions in a questions file (a remote one is only checked to exist).

    Raises:
        QuestionsFileError: the file is invalid (file, entry, line and field named).
        UsageError: the file is missing or not a file; StorageError: its store is unreachable.
    """
    from egr.errors import UsageError
    from egr.storage import is_remote, remote_exists

    if is_remote(path):
        if not remote_exists(path, dict(storage_options or {}), what="--questions"):
            raise UsageError(f"--questions {path}: not found")
        return -1
    from egr_core.questions import load_questions

    p = Path(path.removeprefix("file://")).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "no such file"
        raise UsageError(f"--questions {path}: {what}")
    return len(load_questions(p))
