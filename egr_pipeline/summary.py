"""Run summaries: per-document outcomes, totals, the failure rate, and the table users see.

The same rows feed the Prefect table artifact and the CLI table, so both always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from egr_core.errors import EgrError

#: Item statuses that are not failures.
SUCCESS = frozenset({"ok", "no_evidence"})

#: An answer is *unsure* when its log-likelihood per view read is below this (nats; the answer
#: step's confidence, answers.answer_logprob) or its first-token entropy after grounding is above
#: :data:`UNSURE_ENTROPY`: the defaults of sql/low_confidence.sql, which lists them.
UNSURE_LOGPROB = -1.5
UNSURE_ENTROPY = 1.0


def is_unsure(answer: Mapping[str, Any]) -> bool:
    """Whether an answers row is one sql/low_confidence.sql lists with its default thresholds."""
    lp, h = answer.get("answer_logprob"), answer.get("entropy_after")
    return (lp is not None and lp < UNSURE_LOGPROB) or (h is not None and h > UNSURE_ENTROPY)


@dataclass(frozen=True, slots=True)
class DocOutcome:
    """What one document contributed to a run."""

    uri: str
    doc_status: str  # ok | partial | corrupt | encrypted | timeout | ... | crashed
    n_pages: int  # pages processed
    statuses: dict[str, int]  # item status -> count
    error: str | None = None
    written: bool = True  # its rows were committed
    truncated: bool = False  # longer than max_pages: only the first pages were processed
    skipped: int = 0  # pending items another run committed first (not redone)
    unsure: int = 0  # answers the model was unsure of (:func:`is_unsure`)

    @property
    def n_items(self) -> int:
        return sum(self.statuses.values())

    @property
    def n_failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in SUCCESS)


def crashed(uri: str, n_items: int, exc: BaseException) -> DocOutcome:
    """A document whose task crashed outright (nothing written; retried next run)."""
    return DocOutcome(
        uri, "crashed", 0, {"failed": n_items}, f"{type(exc).__name__}: {exc}", written=False
    )


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Totals of one run, and the per-document rows of its summary table."""

    run_id: str
    out: str
    model_id: str
    config_hash: str
    n_documents: int  # PDFs in the source
    n_skipped: int  # items already done before this run
    docs: tuple[DocOutcome, ...]
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return sum(d.n_items for d in self.docs)

    @property
    def n_failed(self) -> int:
        return sum(d.n_failed for d in self.docs)

    @property
    def n_pages(self) -> int:
        return sum(d.n_pages for d in self.docs)

    @property
    def n_unsure(self) -> int:
        return sum(d.unsure for d in self.docs)

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n_items if self.n_items else 0.0

    @property
    def statuses(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for d in self.docs:
            total.update(d.statuses)
        return dict(sorted(total.items()))

    @property
    def seconds_per_page(self) -> float | None:
        return self.elapsed_s / self.n_pages if self.n_pages else None

    def counts(self) -> dict[str, int]:
        """Flat counts for the runs table."""
        return {
            "documents": self.n_documents,
            "documents_processed": len(self.docs),
            "pages": self.n_pages,
            "items": self.n_items,
            "failed_items": self.n_failed,
            "skipped_items": self.n_skipped,
            "unsure_items": self.n_unsure,
            **{f"status:{k}": v for k, v in self.statuses.items()},
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per processed document plus a TOTAL row (artifact and CLI share it)."""
        rows = [
            _row(d.uri.rsplit("/", 1)[-1], d.doc_status + (", truncated" if d.truncated else ""),
                 d.n_pages, d.statuses)
            for d in self.docs
        ]  # fmt: skip
        rows.append(_row("TOTAL", f"{len(self.docs)} docs", self.n_pages, self.statuses))
        return rows

    def headline(self) -> str:
        spp = self.seconds_per_page
        per_page = f", {spp:.2f} s/page" if spp is not None else ""
        return (
            f"run {self.run_id}: {len(self.docs)} documents, {self.n_pages} pages, "
            f"{self.n_items} items ({self.n_failed} failed, {self.n_skipped} already done, "
            f"{self.n_unsure} unsure) "
            f"in {self.elapsed_s:.1f} s{per_page}; failure rate {self.failure_rate:.1%}"
        )


def _row(name: str, status: str, pages: int, statuses: Mapping[str, int]) -> dict[str, Any]:
    ok = statuses.get("ok", 0)
    no_ev = statuses.get("no_evidence", 0)
    failed = sum(n for s, n in statuses.items() if s not in SUCCESS)
    return {
        "document": name,
        "status": status,
        "pages": pages,
        "answered": ok,
        "no_evidence": no_ev,
        "failed": failed,
    }


class FailureRateExceeded(EgrError):
    """The run's failure rate passed its threshold; the tables were written all the same."""

    status = "failed"

    def __init__(self, summary: RunSummary, threshold: float) -> None:
        self.summary, self.threshold = summary, threshold
        super().__init__(
            f"run {summary.run_id}: {summary.n_failed} of {summary.n_items} items failed "
            f"({summary.failure_rate:.1%}), above max_failure_rate {threshold:.1%}; "
            f"rows are under {summary.out}"
        )
