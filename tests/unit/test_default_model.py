"""The default model reaches a run through the engine's entry-point lookup, never by the flow
importing the CLI package."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest

from egr_core.errors import ModelLoadError
from egr_pipeline import models


def test_the_installed_default_is_the_shipped_reader() -> None:
    path = Path(models.default_model())
    assert (path / "config.json").is_file()
    assert path.parts[-2:] == ("assets", "reader")


def test_run_params_take_the_engines_default() -> None:
    from flows.params import RunParams

    params = RunParams(source="in", questions="q.yaml", out="out")
    assert params.model == models.default_model()


def test_no_installed_default_is_a_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = md.entry_points

    def without_defaults(**kw: str) -> md.EntryPoints:
        if kw.get("group") == models.DEFAULT_MODEL_GROUP:
            return md.EntryPoints(())
        return real(**kw)

    monkeypatch.setattr(md, "entry_points", without_defaults)
    with pytest.raises(ModelLoadError, match="pass a model id") as err:
        models.default_model()
    assert "\n" not in str(err.value)


def test_the_first_default_by_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = md.EntryPoints(
        (
            md.EntryPoint("zz", "os.path:sep", models.DEFAULT_MODEL_GROUP),
            md.EntryPoint("aa", "os:getcwd", models.DEFAULT_MODEL_GROUP),
        )
    )
    monkeypatch.setattr(md, "entry_points", lambda **kw: eps)
    import os

    assert models.default_model() == os.getcwd()
