"""Suite-wide test settings: offline, deterministic, CPU-only."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

# Model hubs are unreachable on our machines: never let a test try.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Model slots are per machine; the suite's runs must not queue behind other suites' runs.
os.environ.setdefault("EGR_SLOT_DIR", tempfile.mkdtemp(prefix="egr-slots-test-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(1234)
    try:
        import numpy as np

        np.random.seed(1234)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(1234)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """The shared real-world PDF corpus; tests using it skip where it is absent."""
    if not (SHARED_CORPUS / "manifest.json").is_file():
        pytest.skip(f"shared corpus not found at {SHARED_CORPUS}")
    return SHARED_CORPUS
