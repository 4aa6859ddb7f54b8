"""What the review pages show, as DuckDB SQL over the views of ``sql/00_views.sql``.

Every list is filtered, sorted and paged in SQL (``LIMIT``/``OFFSET``), so a page costs the same
with 100 answers or 100,000. Queries name their columns, so columns added to the tables later
do not change what a page shows. One :class:`ReviewData` serves a whole web server: each request
takes its own cursor (DuckDB connections are not shared between threads).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from egr.review import truth
from egr_pipeline.duck import connect, resolve_sql, set_variables
from egr_pipeline.reviews import RUN_ID_RE, VERDICTS, Verdict, write_review
from egr_pipeline.store import Store, StoreError

log = logging.getLogger(__name__)

PAGE_SIZE = 50
VERDICT_FILTERS = ("any", "unreviewed", "reviewed", *VERDICTS)

#: One answers-list row: the columns every list query returns, in order.
LIST_COLUMNS = (
    "run_id",
    "work_key",
    "doc_id",
    "uri",
    "question_id",
    "question",
    "answer",
    "status",
    "entropy_before",
    "entropy_after",
    "answer_logprob",
    "n_evidence",
    "config_hash",
    "verdict",
    "corrected_answer",
    "expected",
)


@dataclass(frozen=True)
class Filters:
    """The answers list's filters (all optional) and its page. Built from query parameters."""

    run: str = ""  # "" = the latest answer per (document, question)
    doc: str = ""  # doc_id prefix or part of the uri
    question: str = ""  # question_id
    status: str = ""
    verdict: str = "any"
    min_entropy: float | None = None
    max_entropy: float | None = None
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Filters:
        def num(name: str) -> float | None:
            try:
                v = float(params.get(name, "") or "nan")
            except ValueError:
                return None
            return v if math.isfinite(v) else None

        try:
            page = max(1, int(params.get("page", "1") or 1))
        except ValueError:
            page = 1
        verdict = params.get("verdict", "any") or "any"
        run = params.get("run", "").strip()
        return cls(
            run=run if RUN_ID_RE.match(run) else "",
            doc=params.get("doc", "").strip()[:200],
            question=params.get("question", "").strip()[:200],
            status=params.get("status", "").strip()[:50],
            verdict=verdict if verdict in VERDICT_FILTERS else "any",
            min_entropy=num("min_entropy"),
            max_entropy=num("max_entropy"),
            page=min(page, 10_000_000),
        )

    def params(self, **override: Any) -> dict[str, str]:
        """Query parameters that reproduce these filters (empty ones left out)."""
        f = replace(self, **override)
        out = {
            "run": f.run,
            "doc": f.doc,
            "question": f.question,
            "status": f.status,
            "verdict": "" if f.verdict == "any" else f.verdict,
            "min_entropy": "" if f.min_entropy is None else f"{f.min_entropy:g}",
            "max_entropy": "" if f.max_entropy is None else f"{f.max_entropy:g}",
            "page": "" if f.page == 1 else str(f.page),
        }
        return {k: v for k, v in out.items() if v}


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    filters: Filters
    page_size: int
    offset: int = 0
    facets: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


class ReviewData:
    """The store under review: queries for the pages and the verdict writer.

    Args:
        store: the output root (``--out``).
        reviewer: the name stamped on verdicts.
        egr_version: stamped on verdicts.
        ground_truth: explicit ``ground_truth.jsonl`` files; without them, egr looks for one
            next to each run's source (where ``egr synth`` and ``egr demo`` put it).
    """

    def __init__(
        self,
        store: Store,
        *,
        reviewer: str,
        egr_version: str,
        ground_truth: list[str] | None = None,
    ) -> None:
        self.store, self.reviewer, self.egr_version = store, reviewer, egr_version
        self._con = connect(store)
        self._lock = threading.Lock()
        try:
            self.ground_truth_files = truth.load(self._con, store, ground_truth)
        except StoreError:
            self._con.close()
            raise

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one request (fresh listings of the store's files)."""
        if not self.store.local:
            self.store.fs.invalidate_cache()
        with self._lock:
            cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    # ------------------------------------------------------------------------- runs
    def runs(self) -> list[dict[str, Any]]:
        """One row per run (``sql/runs_summary.sql``) with its status counts and verdicts."""
        sql, _ = resolve_sql("runs_summary.sql")
        with self.cursor() as cur:
            runs = _dicts(cur.execute(sql))
            counts = cur.execute(
                "SELECT run_id, status, count(*) FROM answers GROUP BY ALL ORDER BY 1, 3 DESC"
            ).fetchall()
            reviewed = cur.execute(
                "SELECT run_id, verdict, count(*) FROM reviews_latest GROUP BY ALL"
            ).fetchall()
        by_run: dict[str, dict[str, int]] = {}
        for rid, status, n in counts:
            by_run.setdefault(rid, {})[status] = n
        verdicts: dict[str, dict[str, int]] = {}
        for rid, verdict, n in reviewed:
            verdicts.setdefault(rid, {})[verdict] = n
        for r in runs:
            r["status_counts"] = by_run.get(r["run_id"], {})
            r["verdicts"] = verdicts.get(r["run_id"], {})
            r["n_reviewed"] = sum(r["verdicts"].values())
        return runs[::-1]  # newest first

    def diff(self, run_a: str | None, run_b: str | None) -> list[dict[str, Any]]:
        """The nightly diff between two runs (``sql/answers_diff.sql``; default the latest two)."""
        sql, _ = resolve_sql("answers_diff.sql")
        variables = {k: v for k, v in (("run_a", run_a), ("run_b", run_b)) if v}
        with self.cursor() as cur:
            set_variables(cur, variables)
            return _dicts(cur.execute(sql))

    # ---------------------------------------------------------------------- answers
    def _base(self, f: Filters) -> tuple[str, list[Any]]:
        """``(FROM ... WHERE ...)`` of the filtered answers, and its parameters."""
        source = "answers_latest" if not f.run else "(SELECT * FROM answers WHERE run_id = ?)"
        params: list[Any] = [] if not f.run else [f.run]
        where = ["true"]
        if f.doc:
            where.append("(starts_with(a.doc_id, ?) OR contains(lower(d.uri), lower(?)))")
            params += [f.doc, f.doc]
        if f.question:
            where.append("a.question_id = ?")
            params.append(f.question)
        if f.status:
            where.append("a.status = ?")
            params.append(f.status)
        if f.min_entropy is not None:
            where.append("a.entropy_after >= ?")
            params.append(f.min_entropy)
        if f.max_entropy is not None:
            where.append("a.entropy_after <= ?")
            params.append(f.max_entropy)
        if f.verdict == "unreviewed":
            where.append("r.verdict IS NULL AND a.answer IS NOT NULL")  # as sql/unreviewed.sql
        elif f.verdict == "reviewed":
            where.append("r.verdict IS NOT NULL")
        elif f.verdict in VERDICTS:
            where.append("r.verdict = ?")
            params.append(f.verdict)
        sql = f"""
            FROM {source} AS a
            LEFT JOIN (SELECT run_id, doc_id, any_value(uri) AS uri FROM documents GROUP BY ALL)
                AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
            LEFT JOIN reviews_latest AS r ON r.run_id = a.run_id AND r.work_key = a.work_key
            LEFT JOIN ground_truth AS g ON g.doc_id = a.doc_id AND g.question_id = a.question_id
            WHERE {" AND ".join(where)}"""
        return sql, params

    _SELECT = """
        SELECT a.run_id, a.work_key, a.doc_id, d.uri, a.question_id, a.question, a.answer,
            a.status, a.entropy_before, a.entropy_after, a.answer_logprob, a.n_evidence,
            a.config_hash,
            r.verdict, r.corrected_answer, g.expected"""
    #: Least confident first (as sql/low_confidence.sql: the least likely answer, then answers
    #: read once by entropy); a total order so that pages never overlap.
    _ORDER = """
        ORDER BY a.answer_logprob ASC NULLS LAST, a.entropy_after DESC NULLS LAST, d.uri,
            a.doc_id, a.question_id, a.run_id, a.work_key"""

    def answers(self, f: Filters, page_size: int = PAGE_SIZE) -> Page:
        """One page of the filtered answers, least confident first (lowest log-likelihood per
        view, then highest entropy)."""
        base, params = self._base(f)
        with self.cursor() as cur:
            total = cur.execute(f"SELECT count(*) {base}", params).fetchone()[0]
            n_pages = max(1, math.ceil(total / page_size))
            f = replace(f, page=min(f.page, n_pages))
            offset = (f.page - 1) * page_size
            rows = _dicts(
                cur.execute(
                    f"{self._SELECT} {base} {self._ORDER} LIMIT ? OFFSET ?",
                    [*params, page_size, offset],
                )
            )
        return Page(rows, total, f, page_size, offset)

    def answer_at(self, f: Filters, index: int) -> dict[str, Any] | None:
        """The answer at 0-based ``index`` of the filtered, sorted list (None past the end)."""
        if index < 0:
            return None
        base, params = self._base(f)
        with self.cursor() as cur:
            rows = _dicts(
                cur.execute(
                    f"{self._SELECT} {base} {self._ORDER} LIMIT 1 OFFSET ?", [*params, index]
                )
            )
        return rows[0] if rows else None

    def facets(self) -> dict[str, list[Any]]:
        """Choices for the filter form: runs (newest first), question ids, statuses."""
        with self.cursor() as cur:
            runs = [
                r[0]
                for r in cur.execute(
                    "SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM commits) "
                    "ORDER BY started_at DESC, run_id DESC LIMIT 200"
                ).fetchall()
            ]
            questions = [
                r[0]
                for r in cur.execute(
                    "SELECT DISTINCT question_id FROM answers ORDER BY 1 LIMIT 500"
                ).fetchall()
            ]
            statuses = [
                r[0]
                for r in cur.execute("SELECT DISTINCT status FROM answers ORDER BY 1").fetchall()
            ]
        return {"runs": runs, "questions": questions, "statuses": statuses}

    # ---------------------------------------------------------------- one answer
    def answer_row(self, run_id: str, work_key: str) -> dict[str, Any] | None:
        """The answers row (named columns) with its uri, latest verdict and ground truth."""
        with self.cursor() as cur:
            rows = _dicts(
                cur.execute(
                    f"""{self._SELECT}, a.model_id, a.n_rounds, a.stop_reason, a.page, a.error,
                        r.reviewer, r.reviewed_at
                    FROM answers AS a
                    LEFT JOIN (SELECT run_id, doc_id, any_value(uri) AS uri FROM documents
                        GROUP BY ALL) AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
                    LEFT JOIN reviews_latest AS r
                        ON r.run_id = a.run_id AND r.work_key = a.work_key
                    LEFT JOIN ground_truth AS g
                        ON g.doc_id = a.doc_id AND g.question_id = a.question_id
                    WHERE a.run_id = ? AND a.work_key = ?
                    ORDER BY a.written_at DESC LIMIT 1""",
                    [run_id, work_key],
                )
            )
        return rows[0] if rows else None

    def rounds(self, run_id: str, work_key: str) -> list[dict[str, Any]]:
        """The zoom rounds of an answer: per round its spatial entropy, first-token entropy and
        the crops it looked at (maps grids of blocks > 0, with their boxes on the page)."""
        with self.cursor() as cur:
            grids = _dicts(
                cur.execute(
                    """SELECT round, block, span, kind, spatial_entropy, entropy,
                        x0_n, y0_n, x1_n, y1_n, x0_pt, y0_pt, x1_pt, y1_pt
                    FROM maps WHERE run_id = ? AND work_key = ? ORDER BY round, block, span""",
                    [run_id, work_key],
                )
            )
        out: dict[int, dict[str, Any]] = {}
        for g in grids:
            r = out.setdefault(
                g["round"],
                {
                    "round": g["round"],
                    "spatial_entropy": g["spatial_entropy"],
                    "entropy": g["entropy"],
                    "crops": [],
                },
            )
            if g["block"] > 0 and all(c["block"] != g["block"] for c in r["crops"]):
                r["crops"].append(g)
        return [out[k] for k in sorted(out)]

    def crop_box(self, run_id: str, work_key: str, round_: int, block: int) -> dict[str, Any]:
        """The page box of the crop ``block`` of zoom round ``round_`` (first grid of it)."""
        with self.cursor() as cur:
            rows = _dicts(
                cur.execute(
                    "SELECT x0_n, y0_n, x1_n, y1_n FROM maps WHERE run_id = ? AND work_key = ? "
                    "AND round = ? AND block = ? ORDER BY span LIMIT 1",
                    [run_id, work_key, round_, block],
                )
            )
        return rows[0] if rows else {}

    # --------------------------------------------------------------------- verdicts
    def record(
        self,
        run_id: str,
        work_key: str,
        verdict: str,
        corrected_answer: str | None = None,
        submission: str | None = None,
    ) -> dict[str, Any] | None:
        """Write a verdict on an answer to the reviews table; None when no such answer.

        Raises:
            egr_pipeline.reviews.ReviewError: a bad verdict (unknown, missing corrected text, ...).
        """
        row = self.answer_row(run_id, work_key)
        if row is None:
            return None
        full = {**row, "model_id": row.get("model_id")}
        v = Verdict(full, verdict, self.reviewer, corrected_answer or None, submission or None)
        return write_review(self.store, v, egr_version=self.egr_version)
