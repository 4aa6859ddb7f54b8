"""The house's shape (docs/architecture.md): no module needs scrolling without a stated reason.

The layer contract (import-linter) and the type checker (mypy) run in ``make test`` next to this.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Lines a module may have; a longer one says why in its opening lines ("size: <reason>").
MAX_LINES = 400
ROOMS = ("egr", "egr_core", "egr_pipeline", "tasks", "flows", "bench", "tests")


def _tracked_python() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / p for p in out.split() if p.split("/", 1)[0] in ROOMS]


def test_no_module_over_the_limit_without_a_reason() -> None:
    files = _tracked_python()
    assert len(files) > 100, f"found only {len(files)} modules under {ROOMS}: wrong root?"
    over = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        opening = "\n".join(lines[:15]).lower()
        if len(lines) > MAX_LINES and "size:" not in opening:
            over.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not over, f"modules over {MAX_LINES} lines with no 'size:' reason: {over}"


def test_the_engine_and_the_method_are_packages_of_their_own() -> None:
    assert not list((ROOT / "tasks").glob("io/*.py")), "the engine is egr_pipeline/, not tasks/io/"
    assert not list((ROOT / "egr_core").glob("*synth*")), "synthetic documents live in egr/synth/"
    tasks = sorted(p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and p.name[0] != "_")
    assert tasks == [], f"tasks/ holds only Prefect task modules, found folders {tasks}"
