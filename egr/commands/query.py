"""``egr query``: run SQL (inline or a sql/ file) over an output root with DuckDB."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import sys
from datetime import date, datetime
from typing import Annotated, Any

import typer

from egr.commands._options import EndpointUrlArg, ProfileArg

FORMATS = ("table", "csv", "json")


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"--set expects NAME=VALUE, got {pair!r}", param_hint="--set")
        out[name.strip()] = value
    return out


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _cell_text(value: Any) -> str:
    """A compact cell for the rich table (csv/json keep full values)."""
    if value is None:
        return ""
    if isinstance(value, str) and _SHA256.match(value):
        return value[:12] + "…"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"[{len(value)} values]"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def print_result(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, title: str) -> None:
    """Print a result as a rich table, CSV or JSON (records) on stdout."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                ["" if v is None else _json_value(v) if not isinstance(v, str) else v for v in row]
            )
        return
    if fmt == "json":
        records = [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    caption = f"{len(rows)} row(s); ids and values shortened, --format csv|json for full values"
    table = Table(title=title, caption=caption, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*(_cell_text(v) for v in row))
    Console().print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on stderr and return the Exit to raise (prefer raising an
    ``egr.errors.UserError``, which every command turns into the same line and exit code)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def open_store(out: str, storage: dict[str, Any]) -> Any:
    """The Store of an output root to read, checked first (missing root, unreachable store).

    Raises:
        UsageError: the root does not exist; StorageError: its object store cannot be reached.
    """
    from egr.storage import check_readable_root
    from egr_pipeline.store import Store

    check_readable_root(out, storage)
    return Store(out, storage_options=storage)


def command(
    query: Annotated[
        str,
        typer.Argument(
            help="Inline SQL, a path to a .sql file, or the name of a file in sql/ "
            "(e.g. low_confidence.sql). The views of sql/00_views.sql are available."
        ),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output root: a folder or s3://bucket/prefix.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table (rich), csv or json.")
    ] = "table",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="NAME=VALUE for a DuckDB variable the SQL reads with getvariable('NAME') "
            "(e.g. --set threshold=1.5, --set doc=invoice.pdf, --set run_a=... --set run_b=...).",
        ),
    ] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
) -> None:
    """Query the answers, evidence and runs tables of an output root with SQL."""
    from egr.errors import UsageError
    from egr.storage import storage_options
    from egr_pipeline.duck import run_query

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    variables = _parse_vars(set_ or [])
    store = open_store(out, storage_options(endpoint_url, profile))
    result = run_query(store, query, variables)  # QueryError, StoreError: one line, exit 2
    title = query if query.lower().endswith(".sql") else "query"
    print_result(result.columns, result.rows, fmt, title)
