"""Where an output root keeps its files, and how one is written so no reader sees half of it:
paths of parts and markers, row groups sized for uneven rows, write-then-rename on local disks.
"""

from __future__ import annotations

import logging
import posixpath
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from egr_core.errors import EgrError

log = logging.getLogger(__name__)


#: Target uncompressed size of one Parquet row group (crops make rows large and uneven).
DEFAULT_ROW_GROUP_BYTES = 32 * 1024 * 1024
COMMITS_DIR = "_commits"


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


class StoreFiles:
    """One root's files: where parts and markers live, atomic Parquet writes, and reads that
    name the file when it is corrupt (the layout is in :mod:`egr_pipeline.store`).

    Constructor arguments: see :class:`egr_pipeline.store.Store`.
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


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, tuple | list) else str(proto)
