"""Fixtures of the fault suite: one corpus, one tiny model, one slot folder, the shared Prefect
API (the ``egr run`` processes talk to it instead of each starting an embedded server)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from faultkit import corpus


@dataclass(frozen=True)
class Env:
    docs: Path
    questions: Path
    model: str
    api_url: str
    slot_dir: Path
    n_pairs: int


@pytest.fixture(scope="session")
def fault_env(tmp_path_factory: pytest.TempPathFactory, prefect_server: str, tiny_model: str):
    root = tmp_path_factory.mktemp("faults")
    docs, questions = corpus(root, n_questions=4)
    return Env(docs, questions, tiny_model, prefect_server, root / "slots", 3 * 4)
