"""Tiny random checkpoints for the adapter tests, built once per test session.

Every model type that has both a tiny builder (``egr.tiny``) and a registered adapter is tested;
``model_type`` is parametrised over that intersection, so new adapters join automatically. A
checkpoint is built with ``save_pretrained`` into a session temp dir and loaded back through
``egr_core.loading.load_vlm`` (``AutoModelForImageTextToText`` / ``AutoProcessor``), the same path
a hub id takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw


def tested_model_types() -> list[str]:
    from egr.tiny import tiny_model_types
    from egr_core.adapters import supported_model_types

    return sorted(set(tiny_model_types()) & set(supported_model_types()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_type" in metafunc.fixturenames:
        metafunc.parametrize("model_type", tested_model_types(), scope="session")


@dataclass(frozen=True)
class TinyVLM:
    model: Any
    processor: Any
    adapter: Any
    model_type: str
    path: Path


@pytest.fixture(scope="session")
def tiny_vlm_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], TinyVLM]:
    """``factory(model_type) -> TinyVLM``; each checkpoint is built and loaded once per session."""
    from egr.tiny import build_tiny
    from egr_core.loading import load_vlm

    torch.set_num_threads(1)
    cache: dict[str, TinyVLM] = {}

    def factory(model_type: str) -> TinyVLM:
        if model_type not in cache:
            path = build_tiny(model_type, tmp_path_factory.mktemp(f"tiny-{model_type}"))
            loaded = load_vlm(str(path), device="cpu", dtype="float32")
            cache[model_type] = TinyVLM(
                loaded.model, loaded.processor, loaded.adapter, loaded.model_type, path
            )
        return cache[model_type]

    return factory


@pytest.fixture
def tiny(model_type: str, tiny_vlm_factory: Callable[[str], TinyVLM]) -> TinyVLM:
    return tiny_vlm_factory(model_type)


def make_page(width: int = 300, height: int = 400, seed: int = 0) -> Image.Image:
    """A non-square white page with a few grey text-like bars (deterministic)."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    g = torch.Generator().manual_seed(seed)
    for i in range(8):
        y = 20 + i * (height - 40) // 8
        w = int(torch.randint(width // 4, width - 40, (1,), generator=g))
        draw.rectangle([20, y, 20 + w, y + 8], fill=(90, 90, 90))
    return img


@pytest.fixture
def page() -> Image.Image:
    return make_page()
