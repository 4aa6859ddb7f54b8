"""The real ``egr`` entry point in a subprocess (``python -m egr``), for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Egr = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def egr(tmp_path: Path) -> Egr:
    """Run ``egr ARGS`` as a user would (``python -m egr``, the console script's ``main``), in
    ``tmp_path``, with no AWS settings of the machine (HOME is a temporary folder) unless
    ``env`` adds them. Returns the CompletedProcess (text stdout/stderr)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
        base.update(HOME=str(home), COLUMNS="80", EGR_DEBUG="")
        return subprocess.run(
            [sys.executable, "-m", "egr", *args], cwd=tmp_path, env={**base, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    return run


def one_line(res: subprocess.CompletedProcess) -> str:
    """The single line an expected failure prints on stderr (asserts there is exactly one and
    no traceback anywhere)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
