"""Ground truth for the review page: the ``ground_truth.jsonl`` that ``egr synth`` (and so
``egr demo``) writes next to a corpus, loaded into a DuckDB table
``ground_truth(doc_id, question_id, expected)`` beside the store's views. Read only."""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import fsspec

from egr_pipeline.store import Store, StoreError

log = logging.getLogger(__name__)
GROUND_TRUTH_FILE = "ground_truth.jsonl"


class GroundTruthError(StoreError):
    """A ground-truth file given on the command line that cannot be read."""

    status = "bad_ground_truth"


def next_to(store: Store, source: str) -> list[str]:
    """The ground-truth file in a run's source folder (or beside a source file), if any."""
    if "://" not in source:
        p = Path(source)
        cand = (p if p.is_dir() else p.parent) / GROUND_TRUTH_FILE
        return [str(cand)] if cand.is_file() else []
    fs = store.fs
    proto = source.split("://", 1)[0]
    protos = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if proto not in protos:
        return []
    path = fs._strip_protocol(source).rstrip("/")
    for folder in (path, posixpath.dirname(path)):
        cand = posixpath.join(folder, GROUND_TRUTH_FILE)
        try:
            if fs.isfile(cand):
                return [f"{proto}://{cand}"]
        except OSError:
            return []
    return []


def read_rows(store: Store, f: str) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (local, or a URL read through the store's filesystem when the
    protocol matches, else through fsspec)."""
    if "://" in f:
        fs = store.fs
        protos = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if f.split("://", 1)[0] in protos:
            with fs.open(fs._strip_protocol(f), "rt") as fh:
                text = fh.read()
        else:
            with fsspec.open(f, "rt") as fh:
                text = fh.read()
    else:
        text = Path(f).read_text()
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {n}: not JSON ({exc.msg})") from exc


def load(con: duckdb.DuckDBPyConnection, store: Store, explicit: list[str] | None) -> list[str]:
    """Create the ``ground_truth`` table from ``explicit`` files or, without them, from the
    file next to each run's source. Returns the files used.

    Raises:
        GroundTruthError: an explicit file cannot be read (found files only log a warning).
    """
    con.execute("CREATE TABLE ground_truth (doc_id VARCHAR, question_id VARCHAR, expected VARCHAR)")
    files = list(explicit or [])
    if not explicit:
        for (src,) in con.execute("SELECT DISTINCT source FROM runs").fetchall():
            if src:
                files.extend(next_to(store, str(src)))
    rows: dict[tuple[str, str], str] = {}
    used = []
    for f in dict.fromkeys(files):
        try:
            for row in read_rows(store, f):
                if {"doc_id", "question_id", "answer"} <= row.keys():
                    rows[(row["doc_id"], row["question_id"])] = str(row["answer"])
            used.append(f)
        except (OSError, ValueError) as exc:
            if explicit:
                raise GroundTruthError(f"ground truth {f}: {exc}") from exc
            log.warning("ground truth %s not used: %s", f, exc)
    if rows:
        con.executemany(
            "INSERT INTO ground_truth VALUES (?, ?, ?)", [[*k, v] for k, v in rows.items()]
        )
    return used
