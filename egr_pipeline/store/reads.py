"""What an output root has committed: markers (cached, they are immutable), done work keys, run
rows, and table reads that show a part only once its group's marker exists.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from egr_pipeline.schemas import COMMITS, GROUP_TABLES, RUNS
from egr_pipeline.store.files import (
    COMMITS_DIR,
    EmptyStoreError,
    StoreError,
    StoreFiles,
)
from egr_pipeline.visible import visible_pairs

log = logging.getLogger(__name__)


#: Commit markers already read, by (root url, path). Markers are immutable once written.
_MARKER_CACHE: dict[tuple[str, str], pa.Table] = {}
_MARKER_CACHE_MAX = 100_000


class StoreReads(StoreFiles):
    """Reads of one root: commit markers, done keys, run rows and the committed rows of a
    table (one final row per key, :mod:`egr_pipeline.visible`)."""

    def commits(self, run_id: str | None = None) -> pa.Table:
        """All commit markers (one row per committed work key), optionally of one run."""
        self._refresh()
        run_glob = f"run_id={run_id}" if run_id else "run_id=*"
        files = self._glob(f"{COMMITS_DIR}/{run_glob}/*.parquet")
        if not files:
            return COMMITS.empty_table()
        tables = []
        for f in files:
            # Markers are written once and never change, so each is read once per process:
            # a long run's write_group lists its markers but reads only the new ones.
            cache_key = (self.url, f)
            if cache_key not in _MARKER_CACHE:
                if len(_MARKER_CACHE) >= _MARKER_CACHE_MAX:
                    _MARKER_CACHE.clear()
                _MARKER_CACHE[cache_key] = self._read_file(f)
            tables.append(_MARKER_CACHE[cache_key])
        return pa.concat_tables(tables)

    def done_keys(
        self, run_id: str | None = None, *, exclude_status: Iterable[str] = ()
    ) -> set[str]:
        """Work keys committed under the root (or one run), reading only the commit markers.

        Args:
            run_id: restrict to one run.
            exclude_status: statuses that do not count as done (e.g. a transient ``"failed"``
                the orchestration wants to retry).
        """
        table = self.commits(run_id)
        excl = set(exclude_status)
        return {
            k
            for k, s in zip(table["work_key"].to_pylist(), table["status"].to_pylist(), strict=True)
            if s not in excl
        }

    def run_counts(self, run_id: str) -> dict[str, int]:
        """Committed groups and items of a run, per status (``status:<s>`` keys)."""
        table = self.commits(run_id)
        statuses = table["status"].to_pylist()
        out: dict[str, int] = {
            "groups": len(set(table["group_id"].to_pylist())),
            "items": len(statuses),
            "failed_items": sum(s not in ("ok", "no_evidence") for s in statuses),
        }
        for s in sorted(set(statuses)):
            out[f"status:{s}"] = statuses.count(s)
        return out

    def run_rows(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """The current runs row per run id (the "end" row when the run finished)."""
        self._refresh()
        files = self._glob(f"runs/run_id={run_id or '*'}/part-*.parquet")
        out: dict[str, dict[str, Any]] = {}
        for f in files:
            for row in self._read_file(f).to_pylist():
                cur = out.get(row["run_id"])
                if cur is None or (row["phase"] == "end", row["written_at"]) > (
                    cur["phase"] == "end",
                    cur["written_at"],
                ):
                    out[row["run_id"]] = row
        return out

    def read(
        self,
        table: str,
        *,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        raw: bool = False,
    ) -> pa.Table:
        """Rows of one table from committed groups only (orphaned parts are ignored); for the
        tables with a work key, only the rows :mod:`egr_pipeline.visible` keeps (one final row per
        key: a concurrent run's duplicate is hidden). ``raw=True`` returns every committed row.

        Raises:
            CorruptPartError: a committed part cannot be read (the message names it).
            StoreError: a committed part is missing.
        """
        if table == "runs":
            rows = list(self.run_rows(run_id).values())
            return pa.Table.from_pylist(rows, schema=RUNS).select(columns or RUNS.names)
        schema = GROUP_TABLES[table]
        commits = self.commits(run_id)
        rids, gids = commits["run_id"].to_pylist(), commits["group_id"].to_pylist()
        groups = sorted(set(zip(rids, gids, strict=True)))
        keep = None if raw or "work_key" not in schema.names else visible_pairs(commits)
        cols = None if columns is None or keep is None else [*columns, "group_id", "work_key"]
        parts = []
        for rid, gid in groups:
            path = self.part_path(table, rid, gid)
            if not self.fs.exists(path):
                raise StoreError(f"{self._display(path)}: committed part is missing")
            part = self._read_file(path, list(dict.fromkeys(cols)) if cols else columns)
            if keep is not None:
                mask = [(gid, k) in keep for k in part["work_key"].to_pylist()]
                part = part.filter(pa.array(mask, type=pa.bool_()))
                part = part.select(columns) if columns is not None else part
            parts.append(part)
        if not parts:
            return schema.empty_table().select(columns or schema.names)
        return pa.concat_tables(parts, promote_options="default")

    def run_ids(self) -> list[str]:
        """Run ids that have a runs row or a commit, sorted."""
        self._refresh()
        ids = set()
        for pattern in ("runs/run_id=*", f"{COMMITS_DIR}/run_id=*"):
            for p in self._glob(pattern):
                ids.add(posixpath.basename(p).split("=", 1)[1])
        return sorted(ids)

    def parquet_files(self) -> list[str]:
        """Every ``*.parquet`` file under the root (committed or not)."""
        self._refresh()
        return self._glob("**/*.parquet")

    def verify(self) -> list[tuple[str, str]]:
        """Read every Parquet footer under the root; return ``(path, reason)`` of bad ones."""
        bad: list[tuple[str, str]] = []
        for path in self.parquet_files():
            try:
                with self.fs.open(path, "rb") as fh:
                    pq.read_metadata(fh)
            except (pa.ArrowException, OSError) as exc:
                bad.append((self._display(path), str(exc)))
        return bad

    def check_readable(self) -> None:
        """Raise a clear :class:`StoreError` when the root is missing or holds no results.

        Raises:
            StoreError: the root does not exist or is not an egr root.
            EmptyStoreError: runs exist but none committed a work group.
        """
        if not self.exists():
            raise StoreError(f"output root {self.url} does not exist")
        self._refresh()
        if self._glob(f"{COMMITS_DIR}/run_id=*/*.parquet"):
            return
        runs = self.run_ids()
        if not runs:
            raise EmptyStoreError(
                f"output root {self.url} holds no egr runs (expected runs/ and _commits/ folders)"
            )
        raise EmptyStoreError(
            f"output root {self.url} has {len(runs)} run(s) ({', '.join(runs[:5])}) but no "
            "committed results: the run(s) wrote nothing yet"
        )


def done_keys(
    root: str,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    run_id: str | None = None,
    exclude_status: Iterable[str] = (),
) -> set[str]:
    """Work keys already committed under ``root`` (reads only the small commit markers)."""
    store = StoreReads(root, fs=fs)
    if not store.exists():
        return set()
    return store.done_keys(run_id, exclude_status=exclude_status)
