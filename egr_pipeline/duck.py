"""DuckDB over an egr output root: the views of ``sql/00_views.sql`` and the query files.

s3:// (or any fsspec) roots are read through ``duckdb.register_filesystem`` with the store's
fsspec instance, so DuckDB needs no httpfs extension and no network beyond the store's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from egr_pipeline.store import CorruptPartError, Store, StoreError

#: The repository's ``sql/`` folder.
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
VIEWS_FILE = "00_views.sql"
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class QueryError(StoreError):
    """A query that cannot run: bad SQL, a missing file, a bad variable."""

    status = "bad_query"


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def sql_literal(value: str) -> str:
    """The body of a single-quoted SQL string literal (quotes doubled)."""
    return value.replace("'", "''")


def views_sql(root_url: str, views_file: Path | None = None) -> str:
    """``00_views.sql`` with ``${root}`` replaced by the escaped root."""
    text = (views_file or SQL_DIR / VIEWS_FILE).read_text()
    return text.replace("${root}", sql_literal(root_url.rstrip("/")))


def connect(store: Store, *, check: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the egr views over ``store``.

    Raises:
        StoreError: the root is missing or holds no committed results (``check``).
        CorruptPartError: a Parquet file under the root cannot be read (names it).
    """
    if check:
        store.check_readable()
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    try:
        con.execute(views_sql(store.url))
    except duckdb.Error as exc:
        raise _explain(store, exc, "creating the views of sql/00_views.sql") from exc
    return con


def _explain(store: Store, exc: duckdb.Error, what: str) -> StoreError:
    """Turn a DuckDB error into a clear one, naming a corrupt part when there is one."""
    bad = store.verify()
    if bad:
        path, reason = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return CorruptPartError(path + more, reason)
    return QueryError(f"{what}: {exc}")


def resolve_sql(query_or_file: str) -> tuple[str, str]:
    """``(sql text, label)`` from inline SQL, a path to a .sql file, or a name in ``sql/``.

    Raises:
        QueryError: a ``.sql`` name that is neither a file nor in ``sql/``, or an empty query.
    """
    q = query_or_file.strip()
    if not q:
        raise QueryError("empty query")
    if q.lower().endswith(".sql") and "\n" not in q:
        for cand in (Path(q), SQL_DIR / q, SQL_DIR / Path(q).name):
            if cand.is_file():
                text = cand.read_text()
                if not _strip_comments(text).strip():
                    raise QueryError(f"{cand}: the file holds no SQL statement")
                return text, str(cand)
        raise QueryError(f"SQL file {q} not found (looked in . and {SQL_DIR})")
    return q, "query"


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def set_variables(con: duckdb.DuckDBPyConnection, variables: Mapping[str, str]) -> None:
    """``SET VARIABLE name = 'value'`` for each pair (values are strings; SQL files cast)."""
    for name, value in variables.items():
        if not _VAR_NAME.match(name):
            raise QueryError(f"bad variable name {name!r}: use letters, digits and underscores")
        con.execute(f"SET VARIABLE {name} = '{sql_literal(str(value))}'")


def run_query(
    store: Store, query_or_file: str, variables: Mapping[str, str] | None = None
) -> QueryResult:
    """Run inline SQL or a sql/ file against the views over ``store``.

    Raises:
        StoreError: missing/empty root; CorruptPartError naming a bad file; QueryError for SQL
            that does not parse or bind (the message names the file).
    """
    sql, label = resolve_sql(query_or_file)
    con = connect(store)
    try:
        set_variables(con, variables or {})
        try:
            cur = con.execute(sql)
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as exc:
            raise QueryError(f"{label}: {exc}") from exc
        except duckdb.Error as exc:
            raise _explain(store, exc, label) from exc
        if cur.description is None:
            return QueryResult([], [])
        columns = [d[0] for d in cur.description]
        return QueryResult(columns, [tuple(r) for r in cur.fetchall()])
    finally:
        con.close()
