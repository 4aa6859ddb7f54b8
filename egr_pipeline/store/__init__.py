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

Modules: :mod:`.files` (paths, atomic writes), :mod:`.reads` (markers, done keys, table
reads), :mod:`.commit` (run rows, write groups; :class:`Store`).
"""

from egr_pipeline.store.commit import Commit, Store, group_id_for
from egr_pipeline.store.files import (
    COMMITS_DIR,
    DEFAULT_ROW_GROUP_BYTES,
    CorruptPartError,
    EmptyStoreError,
    StoreError,
    row_group_slices,
    row_sizes,
)
from egr_pipeline.store.reads import done_keys

__all__ = [
    "COMMITS_DIR",
    "DEFAULT_ROW_GROUP_BYTES",
    "Commit",
    "CorruptPartError",
    "EmptyStoreError",
    "Store",
    "StoreError",
    "done_keys",
    "group_id_for",
    "row_group_slices",
    "row_sizes",
]
