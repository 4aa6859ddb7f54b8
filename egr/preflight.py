"""Checks a command runs before it starts Prefect or loads weights, so a wrong model id or a bad
questions file fails in a second with one clear line instead of a flow-run traceback."""

from __future__ import annotations

from pathlib import Path


def check_model(model: str) -> str:
    """The checkpoint's ``model_type``, after checking that an adapter serves it.

    Raises:
        ModelLoadError: no such checkpoint, or a hub id that is neither cached nor reachable.
        UnsupportedModelError: no adapter for the checkpoint's ``model_type`` (lists the known).
    """
    from egr_core.adapters import get_adapter
    from tasks.io.models import model_type_of

    model_type = model_type_of(model)
    get_adapter(model_type)
    return model_type


def check_questions(path: str) -> int:
    """The number of questions in a local questions file (remote files are checked by the flow).

    Raises:
        QuestionsFileError: the file is missing or invalid (file, entry, line and field named).
    """
    if "://" in path:
        return -1
    from egr_core.questions import load_questions

    return len(load_questions(Path(path)))
