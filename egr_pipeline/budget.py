"""The retry budget per work key: an item that hit a transient limit ``budget`` times ends as
``gave_up`` (a final status, never retried), with the reasons of all its tries.

Retryable statuses (:data:`RETRY_STATUSES`) are retried by the next run; each committed row
with one of them is a *try*. The planner collects the earlier tries of the keys it schedules
(:func:`prior_tries`); when this run's try fails again and makes ``budget`` tries, the row is
rewritten to ``gave_up`` before it is committed (:func:`apply_budget`). It counts as a failure
in this run's failure gate only: later runs skip it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

#: Statuses a re-run retries: a generic failure, the sandbox's resource limits (the next run may
#: grant more time or memory, or run on a quieter machine) and I/O errors. Statuses of the
#: document itself (corrupt, encrypted, empty, too_large, ...) stay done: retrying cannot help.
RETRY_STATUSES = ("failed", "timeout", "out_of_memory", "crashed", "io_error")
GAVE_UP = "gave_up"
#: Default number of tries of one work key before it is given up.
DEFAULT_RETRY_BUDGET = 3


def prior_tries(store: Any, keys: Iterable[str]) -> dict[str, list[str]]:
    """``work_key -> ["<run_id>: <status>: <error>", ...]`` of the earlier retryable tries of
    ``keys`` (oldest first); keys never tried are absent. Reads the commit markers first and the
    answers table only when some key has a retryable try."""
    wanted = set(keys)
    commits = store.commits()
    tried = {
        k
        for k, s in zip(commits["work_key"].to_pylist(), commits["status"].to_pylist(), strict=True)
        if s in RETRY_STATUSES and k in wanted
    }
    if not tried:
        return {}
    cols = ["work_key", "run_id", "status", "error", "written_at"]
    rows = [r for r in store.read("answers", columns=cols).to_pylist() if r["work_key"] in tried]
    out: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: (r["written_at"], r["run_id"])):
        if r["status"] in RETRY_STATUSES:
            out.setdefault(r["work_key"], []).append(f"{r['run_id']}: {r['status']}: {r['error']}")
    return out


def apply_budget(
    answers: Sequence[MutableMapping[str, Any]], prior: dict[str, list[str]], budget: int
) -> int:
    """Turn this run's retryable answers rows whose key now has ``budget`` tries into
    ``gave_up`` rows (in place); returns how many."""
    n = 0
    for row in answers:
        tries = prior.get(row["work_key"], [])
        if row["status"] in RETRY_STATUSES and len(tries) + 1 >= budget:
            this = f"{row['run_id']}: {row['status']}: {row['error']}"
            row["error"] = f"gave up after {len(tries) + 1} tries: " + " | ".join([*tries, this])
            row["status"] = GAVE_UP
            n += 1
    return n
