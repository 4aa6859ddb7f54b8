"""Which committed rows readers see: exactly one final row per work key (dedup on read).

Two runs on one output root may both answer a work key (two processes on two GPUs started
together; a run that lost the race to a slot and checked just before the other committed).
Both commit, so the files hold two rows; readers see one. Per work key, ordered by commit time
(``committed_at``, then ``run_id``):

- the **first final** row is visible (final = any status a re-run does not retry: ok,
  no_evidence, gave_up, corrupt, ...); later final rows of the key are duplicates, hidden;
- retryable rows (``RETRY_STATUSES``: earlier tries) committed **before** that final row stay
  visible: they are the key's history; retryable rows after it are hidden (no run retries a key
  once a final row exists, so they can only come from a concurrent run);
- a key with no final row shows all its tries.

``Store.read`` applies this rule and the ``visible`` view of ``sql/00_views.sql`` implements the
same rule for SQL; ``answers``, ``evidence`` and ``maps`` keep only visible (group, key) pairs.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from egr_pipeline.budget import RETRY_STATUSES


def visible_pairs(commits: pa.Table) -> set[tuple[str, str]]:
    """The ``(group_id, work_key)`` pairs of ``commits`` (the markers) readers see."""
    by_key: dict[str, list[tuple[Any, str, str, bool]]] = {}
    cols = [commits[c].to_pylist() for c in ("work_key", "committed_at", "run_id", "group_id")]
    for key, at, run, group, status in zip(*cols, commits["status"].to_pylist(), strict=True):
        by_key.setdefault(key, []).append((at, run, group, status not in RETRY_STATUSES))
    out: set[tuple[str, str]] = set()
    for key, tries in by_key.items():
        finals = sorted(t for t in tries if t[3])
        first = finals[0] if finals else None
        if first is not None:
            out.add((first[2], key))
        out.update((t[2], key) for t in tries if not t[3] and (first is None or t[0] < first[0]))
    return out
