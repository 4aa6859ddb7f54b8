"""Planning a corpus run: list the PDFs of a source, hash them, and drop work already done.

A work item is one (document, question) pair under one model and config; its key is
:func:`egr_pipeline.records.work_key` of (doc sha256, question id, question text, model,
config hash).
Keys that the output store has committed are done and are skipped on a re-run.

Hashing needs the bytes; a small index ``<workspace>/hashes.json`` remembers the sha256 of each
(uri, size, mtime/ETag), so an unchanged object is not downloaded again just to be skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from egr_core import __version__
from egr_core.config import EgrConfig
from egr_core.errors import InputError
from egr_core.questions import parse_questions
from egr_core.types import Question
from egr_pipeline.budget import RETRY_STATUSES, prior_tries
from egr_pipeline.models import resolve_config
from egr_pipeline.records import RunContext, new_run_id, work_key
from egr_pipeline.store import Store

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DocItem:
    """One PDF of the source and the questions still to answer on it."""

    uri: str
    doc_id: str  # sha256 hex of the bytes
    n_bytes: int
    questions: tuple[Question, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run will do. ``todo`` keeps only documents with at least one pending question."""

    todo: tuple[DocItem, ...]
    n_documents: int  # PDFs found in the source
    n_items: int  # (document, question) pairs in the source
    n_done: int  # ... of which already committed (skipped)
    workspace: str


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The fsspec filesystem of ``url`` (local paths included)."""
    fs, _ = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs


def list_pdfs(source: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Every ``*.pdf`` under ``source`` (a folder, a prefix, or one file), sorted, as URIs.

    Raises:
        InputError: the source does not exist.
    """
    fs = filesystem(source, storage_options)
    _, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    scheme = "" if protocol in ("file", "local") else f"{protocol}://"
    if fs.isfile(path):
        return [scheme + path if scheme else str(Path(path).resolve())]
    if not fs.exists(path):
        raise InputError(f"{source}: source not found (no such folder, prefix or file)")
    found = [p for p in fs.find(path) if p.lower().endswith(".pdf")]
    return sorted(scheme + p if scheme else str(Path(p).resolve()) for p in found)


def load_questions(path: str, storage_options: dict[str, Any] | None = None) -> list[Question]:
    """Read a questions file (local or fsspec URL) with ``egr_core.questions.parse_questions``.

    Raises:
        InputError: the file is missing, unreadable or invalid (names the file and entry).
    """
    try:
        with fsspec.open(path, "r", encoding="utf-8", **(storage_options or {})) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the questions file: {exc}") from exc
    suffix = path.lower().rsplit(".", 1)[-1]
    fmt = "json" if suffix == "json" else "yaml" if suffix in ("yaml", "yml") else None
    return list(parse_questions(text, source=path, fmt=fmt))


def workspace_dir(out: str) -> Path:
    """Scratch space of a run (local PDF copies, page renders, the hash index)."""
    if "://" not in out or out.startswith("file://"):
        ws = Path(out.removeprefix("file://")) / "_work"
    else:
        digest = hashlib.sha256(out.encode()).hexdigest()[:12]
        ws = Path(tempfile.gettempdir()) / f"egr-work-{digest}"
    ws.mkdir(parents=True, exist_ok=True)
    return ws


def hash_source(
    uris: Sequence[str], workspace: Path, storage_options: dict[str, Any] | None = None
) -> dict[str, tuple[str, int]]:
    """``uri -> (sha256, size)``, streaming each object once and reusing the hash index."""
    index_path = workspace / "hashes.json"
    index: dict[str, list[Any]] = {}
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
    out: dict[str, tuple[str, int]] = {}
    for uri in uris:
        fs = filesystem(uri, storage_options)
        info = fs.info(uri)
        size = int(info.get("size") or 0)
        stamp = str(info.get("ETag") or info.get("mtime") or info.get("LastModified") or "")
        key = f"{uri}|{size}|{stamp}"
        if key in index:
            out[uri] = (index[key][0], size)
            continue
        digest = hashlib.sha256()
        with fs.open(uri, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        out[uri] = (digest.hexdigest(), size)
        index[key] = [digest.hexdigest(), size]
    tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, sort_keys=True), encoding="utf-8")
    tmp.replace(index_path)
    return out


def plan_work(
    source: str,
    questions: Sequence[Question],
    model_id: str,
    config_hash: str,
    done: Iterable[str],
    workspace: Path,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """List, hash and filter: the documents and questions that still need work.

    Two URIs with the same bytes are one document (the first URI is kept).
    """
    done_keys = set(done)
    uris = list_pdfs(source, storage_options)
    hashes = hash_source(uris, workspace, storage_options)
    todo: list[DocItem] = []
    seen: set[str] = set()
    n_items = n_done = 0
    for uri in uris:
        doc_id, size = hashes[uri]
        if doc_id in seen:
            logger.info("%s: same bytes as an earlier file (sha256 %s), skipped", uri, doc_id[:12])
            continue
        seen.add(doc_id)
        asked = [q for q in questions if q.applies_to(uri)]
        pending = tuple(
            q
            for q in asked
            if work_key(doc_id, q.question_id, q.text, model_id, config_hash) not in done_keys
        )
        n_items += len(asked)
        n_done += len(asked) - len(pending)
        if pending:
            todo.append(DocItem(uri, doc_id, size, pending))
    return Plan(tuple(todo), len(seen), n_items, n_done, str(workspace))


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run, resolved: provenance, the effective config, the questions and the pending work."""

    ctx: RunContext
    config: EgrConfig
    questions: tuple[Question, ...]
    plan: Plan
    #: work_key -> reasons of its earlier retryable tries (only keys scheduled by this plan)
    prior: dict[str, list[str]] = field(default_factory=dict)

    @property
    def todo(self) -> tuple[DocItem, ...]:
        return self.plan.todo


def plan_run(
    source: str,
    questions_file: str,
    model_id: str,
    out: str,
    base: EgrConfig | None = None,
    overrides: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> RunPlan:
    """Resolve the config (adapter defaults + overrides), read the questions, and plan the work.

    Items already committed under ``out`` count as done, except those whose status may pass on
    a second try (:data:`RETRY_STATUSES`: retried on the next run, e.g. with larger limits).
    """
    config = resolve_config(model_id, base, **(overrides or {}))
    ctx = RunContext(run_id or new_run_id(), model_id, config.config_hash(), __version__)
    questions = load_questions(questions_file, storage_options)
    out_fs = filesystem(out, storage_options) if "://" in out else None
    store = Store(out, fs=out_fs)
    exists = store.exists()
    done = store.done_keys(exclude_status=RETRY_STATUSES) if exists else set()
    plan = plan_work(
        source, questions, model_id, ctx.config_hash or "", done, workspace_dir(out),
        storage_options,
    )  # fmt: skip
    keys = [item_key(ctx, item.doc_id, q) for item in plan.todo for q in item.questions]
    prior = prior_tries(store, keys) if exists and keys else {}
    return RunPlan(ctx, config, tuple(questions), plan, prior)


def item_key(ctx: RunContext, doc_id: str, q: Question) -> str:
    """The work key of question ``q`` on document ``doc_id`` under the run's model and config."""
    return work_key(doc_id, q.question_id, q.text, ctx.model_id, ctx.config_hash)
