"""Adapter registry and load_vlm's early failure for unsupported checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from egg_toy import ToyAdapter, ToyVLM

from egr_core import adapters
from egr_core.adapters import get_adapter, register, supported_model_types
from egr_core.adapters.base import VLMAdapter
from egr_core.errors import UnsupportedModelError
from egr_core.loading import load_vlm, resolve_dtype


@pytest.fixture
def toy_registered():
    register(ToyAdapter)
    yield
    adapters._REGISTRY.pop("egg_toy", None)


def test_register_and_lookup_by_string_and_model(toy_registered) -> None:
    assert "egg_toy" in supported_model_types()
    assert isinstance(get_adapter("egg_toy"), ToyAdapter)
    adapter = get_adapter(ToyVLM())
    assert isinstance(adapter, ToyAdapter) and isinstance(adapter, VLMAdapter)


def test_registering_a_taken_type_twice_fails(toy_registered) -> None:
    class Other(ToyAdapter):
        pass

    with pytest.raises(ValueError, match="already served"):
        register(Other)


def test_unsupported_model_type_lists_supported_ones() -> None:
    with pytest.raises(UnsupportedModelError) as e:
        get_adapter("bert")
    assert "bert" in str(e.value)
    for t in supported_model_types():
        assert t in str(e.value)


def test_load_vlm_fails_on_config_before_loading_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnsupportedModelError, match="bert"):
        load_vlm(str(tmp_path))


def test_resolve_dtype() -> None:
    import torch

    assert resolve_dtype("auto") == "auto"
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3")


def test_every_listed_adapter_module_registers_its_types() -> None:
    assert adapters._ADAPTER_MODULES == ["qwen_vl", "llava", "llava_next", "internvl", "idefics3"]
    for t in ("qwen2_5_vl", "qwen2_vl", "llava", "llava_next", "internvl", "idefics3"):
        assert t in supported_model_types()
