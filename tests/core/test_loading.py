"""Model resolution errors and the precedence of EGG knobs (family < checkpoint < explicit)."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from egr.preflight import check_model, check_questions
from egr_core.adapters import supported_model_types
from egr_core.errors import ModelLoadError, UnsupportedModelError
from egr_core.loading import checkpoint_egg_defaults, default_config
from egr_core.questions import QuestionsFileError


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="no such checkpoint directory") as err:
        check_model(str(missing))
    assert str(missing) in str(err.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        check_model(str(tmp_path))


def test_unsupported_model_type_lists_the_supported(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError) as err:
        check_model(str(tmp_path))
    msg = str(err.value)
    assert "'bert'" in msg
    for model_type in supported_model_types():
        assert model_type in msg


class _Adapter:
    config_defaults: ClassVar[dict[str, object]] = {"sigma": 2.5, "top_k": 2, "max_rounds": 3}


def test_checkpoint_knobs_override_family_and_are_overridden_by_caller(tmp_path):
    (tmp_path / "egr_config.json").write_text(json.dumps({"top_k": 1, "crop_pixels": 392}))
    assert checkpoint_egg_defaults(str(tmp_path)) == {"top_k": 1, "crop_pixels": 392}
    cfg = default_config(_Adapter(), str(tmp_path), max_rounds=0, sigma=None)
    assert (cfg.sigma, cfg.top_k, cfg.crop_pixels, cfg.max_rounds) == (2.5, 1, 392, 0)
    # Without the file the family defaults stand.
    plain = default_config(_Adapter(), str(tmp_path / "elsewhere"))
    assert (plain.top_k, plain.crop_pixels) == (2, 448)


def test_bad_checkpoint_knobs_file(tmp_path):
    (tmp_path / "egr_config.json").write_text("[1, 2")
    with pytest.raises(ModelLoadError, match=r"egr_config\.json is not valid JSON"):
        checkpoint_egg_defaults(str(tmp_path))


def test_questions_preflight(tmp_path):
    good = tmp_path / "q.yaml"
    good.write_text("- id: total\n  text: What is the total?\n")
    assert check_questions(str(good)) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {id: total}\n")
    with pytest.raises(QuestionsFileError, match="field 'text'"):
        check_questions(str(bad))
