"""Writing to an output root: the run rows, and a work group's parts followed by its commit
marker, so a crash at any point leaves nothing half-visible and a key is never written twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from egr_core.types import Question
from egr_pipeline import faults, records
from egr_pipeline.schemas import COMMITS, GROUP_TABLES, RUNS
from egr_pipeline.store.reads import StoreReads

log = logging.getLogger(__name__)


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


class Store(StoreReads):
    """Read and write the egr tables under one root (layout: :mod:`egr_pipeline.store`).

    Args:
        root: a local folder or an fsspec URL such as ``s3://bucket/prefix``.
        fs: an fsspec filesystem to use (e.g. an ``s3fs.S3FileSystem`` with an endpoint);
            resolved from ``root`` and ``storage_options`` when omitted.
        storage_options: passed to fsspec when resolving ``root``.
        row_group_bytes: target uncompressed bytes per Parquet row group.
    """

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
