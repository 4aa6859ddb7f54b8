"""The questions file: a YAML or JSON list of ``{id, text, pages?, documents?}``.

Format (YAML shown; the same structure in JSON)::

    - id: invoice_total
      text: What is the invoice total?
    - id: due_date
      text: What is the due date?
      pages: [0]          # optional: 0-based page indices, an int or a list of ints
    - id: claim_number
      text: What is the claim number?
      documents: ["form-*.pdf", "claim-*.pdf"]   # optional: file-name patterns (fnmatch)

A top-level mapping ``{questions: [...]}`` is accepted too. Rules: ``id`` is a string (or an
integer, converted) of letters, digits, ``_ . -`` and unique in the file; ``text`` is a non-empty
string; ``pages`` are non-negative integers; any other key is an error (it catches typos such as
``page:``). Every error is an :class:`QuestionsFileError` naming the file, the entry (1-based, with
its id and line when known) and the field.

A corpus run asks every question of every document, unless the question names the documents it
applies to: ``documents`` is a pattern or a list of shell-style patterns (``*``, ``?``, ``[...]``,
case-sensitive) matched against each document's file name (the last part of its path or key). A
question with ``documents`` is asked only of the documents whose name matches one pattern;
``egr synth`` writes them per document kind (``invoice-*.pdf``), so a claim form is never asked
for an invoice number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from egr_core.errors import InputError
from egr_core.types import Question

__all__ = [
    "ID_PATTERN",
    "QuestionsFileError",
    "dump_questions",
    "load_questions",
    "parse_questions",
]

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_FIELDS = ("id", "text", "pages", "documents")


class QuestionsFileError(InputError):
    """A questions file that cannot be used; names the file, the entry and the field."""

    def __init__(
        self,
        source: str,
        reason: str,
        *,
        entry: int | None = None,
        question_id: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.source, self.reason = source, reason
        self.entry, self.question_id, self.field, self.line = entry, question_id, field, line
        where = [source]
        if entry is not None:
            detail = [f"id {question_id!r}"] if question_id else []
            detail += [f"line {line}"] if line is not None else []
            where.append(f"entry {entry}" + (f" ({', '.join(detail)})" if detail else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join([*where, reason]))


def load_questions(path: str | Path) -> tuple[Question, ...]:
    """Read and validate a questions file (``.yaml``/``.yml``/``.json``; others are sniffed).

    Raises:
        QuestionsFileError: the file is missing, unreadable or invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestionsFileError(str(p), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionsFileError(str(p), f"cannot read the file: {exc}") from exc
    suffix = p.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    return parse_questions(text, source=str(p), fmt=fmt)


def parse_questions(
    text: str, *, source: str = "<questions>", fmt: str | None = None
) -> tuple[Question, ...]:
    """Parse and validate questions from the text of a YAML or JSON file.

    Args:
        text: the file's content.
        source: the name used in error messages (the file path).
        fmt: ``"yaml"``, ``"json"`` or None to accept either (YAML is a superset of JSON here).

    Returns:
        The questions, in file order.

    Raises:
        QuestionsFileError: naming ``source``, the entry (1-based), its id and line, and the field.
    """
    if fmt not in (None, "yaml", "json"):
        raise ValueError(f"fmt must be 'yaml', 'json' or None, got {fmt!r}")
    if not text.strip():
        raise QuestionsFileError(source, "the file is empty; expected a list of {id, text}")
    data = _load(text, source, fmt)
    entries = data
    if isinstance(data, dict):
        if set(data) != {"questions"}:
            raise QuestionsFileError(
                source,
                "a top-level mapping must have exactly one key 'questions', got keys "
                + ", ".join(repr(k) for k in data),
            )
        entries = data["questions"]
    if not isinstance(entries, list):
        raise QuestionsFileError(
            source, f"expected a list of questions, got {_kind(entries)} at the top level"
        )
    if not entries:
        raise QuestionsFileError(source, "the list of questions is empty")
    lines = _entry_lines(text, len(entries))
    out: list[Question] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(entries):
        q = _entry(raw, source, i + 1, lines[i])
        if q.question_id in seen:
            raise QuestionsFileError(
                source,
                f"duplicate id, first used by entry {seen[q.question_id]}",
                entry=i + 1,
                question_id=q.question_id,
                field="id",
                line=lines[i],
            )
        seen[q.question_id] = i + 1
        out.append(q)
    return tuple(out)


def dump_questions(questions: Sequence[Question], fmt: str = "yaml") -> str:
    """Serialise questions in the file format :func:`parse_questions` reads."""
    rows: list[dict[str, Any]] = []
    for q in questions:
        row: dict[str, Any] = {"id": q.question_id, "text": q.text}
        if q.pages is not None:
            row["pages"] = list(q.pages)
        if q.documents is not None:
            row["documents"] = list(q.documents)
        rows.append(row)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=100)
    raise ValueError(f"fmt must be 'yaml' or 'json', got {fmt!r}")


def _load(text: str, source: str, fmt: str | None) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuestionsFileError(
                source, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = f" (column {mark.column + 1})" if mark is not None else ""
        raise QuestionsFileError(
            source, f"invalid YAML: {exc.problem or exc.context}{col}", line=line
        ) from None
    except yaml.YAMLError as exc:
        raise QuestionsFileError(source, f"invalid YAML: {exc}") from None


def _entry_lines(text: str, n: int) -> list[int | None]:
    """1-based line of each top-level list entry, when the text composes as YAML."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return [None] * n
    if isinstance(node, yaml.MappingNode) and len(node.value) == 1:
        node = node.value[0][1]
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != n:
        return [None] * n
    return [item.start_mark.line + 1 for item in node.value]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    names |= {int: "an integer", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def _entry(raw: Any, source: str, entry: int, line: int | None) -> Question:
    def fail(reason: str, field: str | None = None, qid: str | None = None) -> QuestionsFileError:
        return QuestionsFileError(
            source, reason, entry=entry, question_id=qid, field=field, line=line
        )

    if not isinstance(raw, dict):
        raise fail(f"expected a mapping with keys id, text[, pages, documents], got {_kind(raw)}")
    raw_id = raw.get("id")
    qid = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    unknown = [str(k) for k in raw if k not in _FIELDS]
    if unknown:
        raise fail(f"unknown field; allowed fields are {', '.join(_FIELDS)}", unknown[0], qid)
    if "id" not in raw:
        raise fail("missing", "id")
    if qid is None:
        raise fail(f"must be a string or an integer, got {_kind(raw_id)}", "id")
    if not ID_PATTERN.match(qid):
        raise fail(
            "must start with a letter or digit and use only letters, digits, '_', '.', '-'",
            "id",
            qid,
        )
    if "text" not in raw:
        raise fail("missing", "text", qid)
    text = raw["text"]
    if not isinstance(text, str):
        raise fail(f"must be a string, got {_kind(text)}", "text", qid)
    if not text.strip():
        raise fail("must not be empty", "text", qid)
    pages = _pages(raw.get("pages"), fail, qid) if "pages" in raw else None
    documents = _documents(raw.get("documents"), fail, qid) if "documents" in raw else None
    return Question(question_id=qid, text=text.strip(), pages=pages, documents=documents)


def _documents(value: Any, fail: Any, qid: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise fail(
            "must not be an empty list (leave it out to ask every document)", "documents", qid
        )
    for v in items:
        if not isinstance(v, str) or not v.strip():
            raise fail(
                f"must be file-name patterns (non-empty strings), got {_kind(v)} {v!r}",
                "documents",
                qid,
            )
        if "/" in v.strip().rstrip("/"):
            raise fail(f"patterns match file names, not paths: {v!r}", "documents", qid)
    return tuple(v.strip() for v in items)


def _pages(value: Any, fail: Any, qid: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise fail("must not be an empty list (leave it out to ask on every page)", "pages", qid)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(
                f"must be 0-based page indices (integers), got {_kind(v)} {v!r}", "pages", qid
            )
        if v < 0:
            raise fail(f"page indices are 0-based and must be >= 0, got {v}", "pages", qid)
    return tuple(sorted(set(items)))
