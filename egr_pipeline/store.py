"""The evidence store: atomic, idempotent Parquet writes partitioned by run, and cheap reads.

Layout under a root (a local folder or ``s3://bucket/prefix``; any fsspec URL)::

    ROOT/runs/run_id=<id>/part-begin.parquet      run row at start (status "running")
    ROOT/runs/run_id=<id>/part-end.parquet        run row at the end: the run-level commit
    ROOT/<table>/run_id=<id>/part-<group>.parquet documents, pages, answers, evidence, maps
    ROOT/_commits/run_id=<id>/<group>.parquet     commit marker of one write group
    ROOT/_leases/run_id=<id>.json                 heartbeat of a live run (egr_pipeline/liveness.py)

A *write group* is a batch of work items (one page's questions, at most ``batch_size``). Its
five table parts are written first (local: temp file then rename; object stores: a PUT is
atomic), and only then its commit marker. Readers (:meth:`Store.read`, the SQL views) see a part
only when its group is committed, so a crash at any point leaves nothing half-visible; a later
write of the same group overwrites the orphaned parts. Within a run a work key is written at
most once: keys that are already committed are dropped from a new group. Every table gets a part
in every group, even an empty one, so the SQL globs always match once anything is committed.

Concurrent runs may commit the same key; :meth:`Store.read` shows one final row per key
(:mod:`egr_pipeline.visible`). Latest-answer semantics: a key re-run under a new run adds rows;
"latest" is the row with the largest ``written_at`` (ties: larger ``run_id``), see
``sql/answers_latest.sql``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from egr_core.errors import EgrError
from egr_core.types import Question
from egr_pipeline import faults, records
from egr_pipeline.schemas import COMMITS, GROUP_TABLES, RUNS
from egr_pipeline.visible import visible_pairs

log = logging.getLogger(__name__)

#: Target uncompressed size of one Parquet row group (crops make rows large and uneven).
DEFAULT_ROW_GROUP_BYTES = 32 * 1024 * 1024
COMMITS_DIR = "_commits"


#: Commit markers already read, by (root url, path). Markers are immutable once written.
_MARKER_CACHE: dict[tuple[str, str], pa.Table] = {}
_MARKER_CACHE_MAX = 100_000


class StoreError(EgrError):
    """A problem with an output root: missing, empty, or unreadable."""

    status = "store_error"


class EmptyStoreError(StoreError):
    status = "empty_store"


class CorruptPartError(StoreError):
    """A Parquet file that cannot be read. Names the file."""

    status = "corrupt_part"

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"corrupt Parquet part {path}: {reason}")


@dataclass(frozen=True, slots=True)
class Commit:
    """What one :meth:`Store.write_group` committed."""

    run_id: str
    group_id: str
    keys: tuple[str, ...]
    paths: dict[str, str]  # table -> part path
    rows: dict[str, int]  # table -> rows written
    committed_at: datetime


def group_id_for(run_id: str, keys: Iterable[str]) -> str:
    """Deterministic id of a write group: sha256 of the run id and the sorted work keys."""
    blob = json.dumps([run_id, sorted(set(keys))])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def row_sizes(table: pa.Table) -> np.ndarray:
    """Approximate uncompressed bytes per row, shape (n,): fixed-width columns share evenly,
    variable-width ones (binary, strings, lists) are counted per row."""
    n = table.num_rows
    sizes = np.zeros(n, dtype=np.int64)
    if n == 0:
        return sizes
    fixed = 0
    for col, f in zip(table.columns, table.schema, strict=True):
        t = f.type
        if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t):
            lens = pc.fill_null(pc.binary_length(col), 0).to_numpy(zero_copy_only=False)
            sizes += lens.astype(np.int64) + 4
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            width = max(getattr(t.value_type, "bit_width", 64) // 8, 1)
            lens = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
            sizes += lens.astype(np.int64) * width + 4
        else:
            fixed += col.nbytes
    return sizes + fixed // n


def row_group_slices(table: pa.Table, target_bytes: int) -> list[tuple[int, int]]:
    """Split rows into consecutive ``(offset, length)`` runs of at most ``target_bytes`` each
    (a single row larger than the target gets a row group of its own)."""
    sizes = row_sizes(table)
    out: list[tuple[int, int]] = []
    start, acc = 0, 0
    for i, s in enumerate(sizes):
        if i > start and acc + int(s) > target_bytes:
            out.append((start, i - start))
            start, acc = i, 0
        acc += int(s)
    if table.num_rows > start:
        out.append((start, table.num_rows - start))
    return out


class Store:
    """Read and write the egr tables under one root.

    Args:
        root: a local folder or an fsspec URL such as ``s3://bucket/prefix``.
        fs: an fsspec filesystem to use (e.g. an ``s3fs.S3FileSystem`` with an endpoint);
            resolved from ``root`` and ``storage_options`` when omitted.
        storage_options: passed to fsspec when resolving ``root``.
        row_group_bytes: target uncompressed bytes per Parquet row group.
    """

    def __init__(
        self,
        root: str,
        *,
        fs: fsspec.AbstractFileSystem | None = None,
        storage_options: Mapping[str, Any] | None = None,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    ) -> None:
        root = str(root).rstrip("/") or "/"
        if fs is None:
            fs, path = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
        else:
            path = fs._strip_protocol(root)
        self.fs: fsspec.AbstractFileSystem = fs
        self.path: str = str(path).rstrip("/") or "/"
        self.local = isinstance(fs, LocalFileSystem)
        self.url = self.path if self.local else f"{_protocol(fs)}://{self.path}"
        self.row_group_bytes = int(row_group_bytes)

    # ----------------------------------------------------------------- paths
    def _p(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def part_path(self, table: str, run_id: str, group_id: str) -> str:
        return self._p(table, f"run_id={run_id}", f"part-{group_id}.parquet")

    def commit_path(self, run_id: str, group_id: str) -> str:
        return self._p(COMMITS_DIR, f"run_id={run_id}", f"{group_id}.parquet")

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    # ---------------------------------------------------------------- writing
    def _write_parquet(self, path: str, table: pa.Table) -> None:
        """Write ``table`` to ``path`` so that no reader ever sees a partial file."""
        target = f"{path}.{uuid.uuid4().hex[:8]}.tmp" if self.local else path
        if self.local:  # object stores have no folders
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with self.fs.open(target, "wb") as fh, pq.ParquetWriter(fh, table.schema) as writer:
            if table.num_rows == 0:
                writer.write_table(table)
            for offset, length in row_group_slices(table, self.row_group_bytes):
                writer.write_table(table.slice(offset, length), row_group_size=length)
        if self.local:
            self.fs.mv(target, path)

    def write_file(self, relpath: str, table: pa.Table) -> str:
        """Write ``table`` to ``ROOT/relpath`` atomically (readers see all of it or nothing);
        returns the full path. For tables outside the write groups, such as ``reviews``."""
        path = self._p(*relpath.split("/"))
        self._write_parquet(path, table)
        return path

    def begin_run(
        self,
        ctx: records.RunContext,
        *,
        source: str | None = None,
        questions: Sequence[Question] | None = None,
        config: Mapping[str, Any] | None = None,
        model_revision: str | None = None,
        started_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Record that a run started (status "running"). Returns the row written."""
        row = records.run_row(
            ctx,
            phase="begin",
            status="running",
            started_at=started_at or datetime.now(UTC),
            source=source,
            questions=questions,
            config=config,
            model_revision=model_revision,
        )
        self._write_run_row(ctx.run_id, "begin", row)
        return row

    def finish_run(
        self,
        ctx: records.RunContext,
        *,
        status: str | None = None,
        error: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Write the run's final row (its commit marker). Counts default to the committed items
        per status; status defaults to ok / partial / failed from those counts."""
        begin = self.run_rows(ctx.run_id).get(ctx.run_id)
        if counts is None:
            counts = self.run_counts(ctx.run_id)
        if status is None:
            n, n_failed = counts.get("items", 0), counts.get("failed_items", 0)
            status = "failed" if error or (n and n_failed == n) else "partial" if n_failed else "ok"
        row = (
            dict(begin)
            if begin
            else records.run_row(ctx, phase="end", status=status, started_at=datetime.now(UTC))
        )
        row.update(
            phase="end",
            status=status,
            error=error,
            finished_at=datetime.now(UTC),
            counts=json.dumps(dict(counts), sort_keys=True),
        )
        row.pop("group_id", None)
        row.pop("written_at", None)
        self._write_run_row(ctx.run_id, "end", row)
        return row

    def _write_run_row(self, run_id: str, phase: str, row: Mapping[str, Any]) -> None:
        now = datetime.now(UTC)
        full = {**row, "group_id": f"run-{phase}", "written_at": now}
        table = pa.Table.from_pylist([full], schema=RUNS)
        self._write_parquet(self._p("runs", f"run_id={run_id}", f"part-{phase}.parquet"), table)

    def write_group(
        self, ctx: records.RunContext, rows: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> Commit | None:
        """Write one work group's rows to every table, then commit it.

        Args:
            ctx: the run (its ``run_id`` is the partition).
            rows: ``{table: rows}`` for any of documents, pages, answers, evidence, maps (see
                :mod:`egr_pipeline.records`). Every work item has exactly one answers row.

        Returns:
            The commit, or ``None`` when every work key of the group was already committed in
            this run (nothing is written: writing the same key twice never duplicates rows).

        Raises:
            ValueError: unknown table, no answers rows, or rows whose run_id differs from ctx.
        """
        unknown = set(rows) - set(GROUP_TABLES)
        if unknown:
            raise ValueError(f"unknown tables {sorted(unknown)}; known: {sorted(GROUP_TABLES)}")
        answers = list(rows.get("answers", []))
        if not answers:
            raise ValueError("a write group needs at least one answers row (one per work item)")
        for table, trs in rows.items():
            bad = {r.get("run_id") for r in trs} - {ctx.run_id}
            if bad:
                raise ValueError(
                    f"{table} rows carry run_id {sorted(map(str, bad))}, expected {ctx.run_id!r}"
                )
        done = self.done_keys(run_id=ctx.run_id)
        keys = {r["work_key"] for r in answers} - done
        if not keys:
            log.info("group already committed in run %s (%d keys); skipped", ctx.run_id, len(done))
            return None
        gid = group_id_for(ctx.run_id, keys)
        now = datetime.now(UTC)
        if not self.fs.exists(self._p("runs", f"run_id={ctx.run_id}", "part-begin.parquet")):
            # Every committed run has a runs row, so the SQL views always find one.
            self.begin_run(ctx, started_at=now)
        paths: dict[str, str] = {}
        counts: dict[str, int] = {}
        for table, schema in GROUP_TABLES.items():
            trs = [
                {**r, "group_id": gid, "written_at": now}
                for r in rows.get(table, [])
                if "work_key" not in schema.names or r["work_key"] in keys
            ]
            path = self.part_path(table, ctx.run_id, gid)
            self._write_parquet(path, pa.Table.from_pylist(trs, schema=schema))
            paths[table], counts[table] = path, len(trs)
        status = {r["work_key"]: r["status"] for r in answers if r["work_key"] in keys}
        marker = pa.Table.from_pylist(
            [
                {
                    "run_id": ctx.run_id,
                    "group_id": gid,
                    "work_key": k,
                    "status": s,
                    "committed_at": now,
                }
                for k, s in sorted(status.items())
            ],
            schema=COMMITS,
        )
        faults.checkpoint("store")  # the fault suite's kill -9 between parts and marker
        self._write_parquet(self.commit_path(ctx.run_id, gid), marker)
        return Commit(ctx.run_id, gid, tuple(sorted(keys)), paths, counts, now)

    # ---------------------------------------------------------------- reading
    def _refresh(self) -> None:
        self.fs.invalidate_cache()

    def _glob(self, pattern: str) -> list[str]:
        return sorted(self.fs.glob(self._p(pattern)))

    def _read_file(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path, filesystem=self.fs, columns=columns)
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise CorruptPartError(self._display(path), str(exc)) from exc

    def _display(self, path: str) -> str:
        return path if self.local else f"{_protocol(self.fs)}://{path}"

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


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, tuple | list) else str(proto)


def done_keys(
    root: str,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    run_id: str | None = None,
    exclude_status: Iterable[str] = (),
) -> set[str]:
    """Work keys already committed under ``root`` (reads only the small commit markers)."""
    store = Store(root, fs=fs)
    if not store.exists():
        return set()
    return store.done_keys(run_id, exclude_status=exclude_status)
