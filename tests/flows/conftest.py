"""Fixtures of the flow tests: ONE Prefect test server for the session, a tiny model, corpora.

The ephemeral server takes 10-40 s to start on a busy machine, so it starts once per session and
only when a flow test asks for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A temporary Prefect API (SQLite in a temp dir) shared by every flow test."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Qwen2.5-VL checkpoint built from a config (no download)."""
    from egr.tiny import build_tiny

    return str(build_tiny("qwen2_5_vl", tmp_path_factory.mktemp("tiny-qwen2_5_vl")))


def write_corpus(folder: Path, kinds: tuple[str, ...], *, corrupt: bool = False, seed: int = 7):
    """Synthetic PDFs of ``kinds`` (one each) in ``folder``, plus an optional corrupt PDF."""
    from egr import synth

    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in synth.generate_corpus(len(kinds), seed=seed, kinds=kinds):
        (folder / name).write_bytes(doc.pdf)
    if corrupt:
        (folder / "broken.pdf").write_bytes(b"\x00\x01 a damaged download, not a PDF at all\n")
    return folder


def write_questions(path: Path, n: int = 2) -> Path:
    """The first ``n`` invoice questions of the synthetic generator as a JSON questions file."""
    from egr import synth

    qs = synth.question_set(("invoice",))[:n]
    path.write_text(json.dumps([{"id": q.question_id, "text": q.text} for q in qs]))
    return path


@pytest.fixture(scope="session")
def corpus_tools():
    """``(write_corpus, write_questions)`` for tests that build their own corpora."""
    return write_corpus, write_questions
