"""The answer step of one document, committed in batches, exactly once per work key.

Inside one model slot: open the document, rank its pages, then ground and **commit batch by
batch** (one page's questions, at most ``batch_size`` at a time, each batch one atomic write
group). Before each batch the keys another run committed since planning are dropped (a
concurrent run that had the slot first), so shared slots mean shared, not doubled, work; dedup on
read (:mod:`egr_pipeline.visible`) covers the rest. A kill loses at most the batch in flight; a stop
request (:mod:`egr_pipeline.stopping`) ends the document after the batch in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from egr_core.config import EgrConfig
from egr_core.types import Question
from egr_pipeline import answering as A
from egr_pipeline import faults
from egr_pipeline.budget import RETRY_STATUSES, apply_budget
from egr_pipeline.models import load_model, set_threads
from egr_pipeline.rasterize import RasterizedDoc, open_view
from egr_pipeline.records import RunContext, merge, work_key
from egr_pipeline.slots import RunCancelled, SlotTimeout, model_slot
from egr_pipeline.store import Store
from egr_pipeline.summary import SUCCESS, DocOutcome, is_unsure

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """How the answer step works: model, batching, retry budget and the model slots."""

    model: str
    device: str
    dtype: str
    config: EgrConfig
    top_pages: int = 3
    batch_size: int = 16
    retry_budget: int = 3
    slot_name: str = "egr-gpu"
    slots: int = 1
    slot_timeout_s: float = 3600.0
    slot_dir: str | None = None
    prior: dict[str, list[str]] = field(default_factory=dict)  # work_key -> earlier tries
    #: torch threads of the model work in this process (None: torch's default, one per core);
    #: 1 is faster on a CPU that other work shares
    threads: int | None = None


@dataclass
class _Doc:
    """What one document has committed so far in this run."""

    doc: RasterizedDoc
    statuses: Counter = field(default_factory=Counter)
    head: dict[str, list[dict]] | None = None
    skipped: int = 0  # keys another run committed first
    unsure: int = 0  # committed answers the model was unsure of (summary.is_unsure)
    stopped: bool = False


def _commit(store: Store, ctx: RunContext, spec: WorkSpec, st: _Doc, rows: dict) -> None:
    """Commit one batch (with the document's head rows if not yet written); retries transient
    store errors, since a failed commit would throw away the batch's model work."""
    rows = merge(st.head or {}, rows)
    apply_budget(rows.get("answers", []), spec.prior, spec.retry_budget)
    for attempt in range(4):
        try:
            store.write_group(ctx, rows)
            break
        except OSError as exc:
            if attempt == 3:
                raise
            log.warning("%s: commit failed (%s), retrying", st.doc.uri, exc)
            time.sleep(0.5 * 2**attempt)
    st.head = None
    answers = rows.get("answers", [])
    st.statuses.update(str(r["status"]) for r in answers)
    st.unsure += sum(1 for r in answers if r["status"] in SUCCESS and is_unsure(r))


def _outcome(st: _Doc) -> DocOutcome:
    d = st.doc
    status = d.status if not st.stopped else f"{d.status}, stopped"
    return DocOutcome(
        d.uri, status, len(d.pages), dict(st.statuses), d.error, written=bool(st.statuses),
        truncated=d.truncated, skipped=st.skipped, unsure=st.unsure,
    )  # fmt: skip


def _pending(store: Store, ctx: RunContext, doc: RasterizedDoc, qs: Sequence[Question]) -> list:
    """``qs`` minus the keys some run has committed with a final status."""
    done = store.done_keys(exclude_status=RETRY_STATUSES)
    key = lambda q: work_key(doc.doc_id, q.question_id, q.text, ctx.model_id, ctx.config_hash)  # noqa: E731
    return [q for q in qs if key(q) not in done]


def answer_document(
    doc: RasterizedDoc,
    spec: WorkSpec,
    ctx: RunContext,
    store: Store,
    stop: threading.Event,
    advance: Callable[[int], None] = lambda n: None,
    say: Callable[[str], None] | None = None,
) -> DocOutcome:
    """Answer every pending question of ``doc`` and commit the rows batch by batch.

    No model slot (timeout, or a stop request while waiting) is an outcome whose
    ``doc_status`` is ``slot_timeout`` / ``cancelled`` and ``error`` says why; nothing of the
    document was committed.
    """
    st = _Doc(doc, head=A.head_rows(ctx, doc) if doc.usable else None)
    pending = _pending(store, ctx, doc, doc.questions)
    st.skipped = len(doc.questions) - len(pending)
    advance(st.skipped)
    if not pending:
        return _outcome(st)
    if not doc.usable:  # the sandbox could not render it: status rows, no model needed
        _commit(store, ctx, spec, st, A.failed_document_rows(ctx, _with(doc, pending)))
        advance(len(pending))
        return _outcome(st)
    slot = model_slot(
        spec.slot_name, spec.slots, run_id=ctx.run_id, timeout_s=spec.slot_timeout_s,
        directory=spec.slot_dir, stop=stop, say=say,
    )  # fmt: skip
    try:
        slot.__enter__()
    except (SlotTimeout, RunCancelled) as exc:  # an outcome, not a task failure (no traceback)
        return DocOutcome(doc.uri, exc.status, 0, {}, str(exc), written=False)
    try:
        with open_view(doc) as view:
            _answer_batches(view, spec, ctx, store, st, pending, stop, advance)
    finally:
        slot.__exit__(None, None, None)
    return _outcome(st)


def _with(doc: RasterizedDoc, questions: Sequence[Question]) -> RasterizedDoc:
    from dataclasses import replace

    return replace(doc, questions=tuple(questions))


def _answer_batches(
    view: Any, spec: WorkSpec, ctx: RunContext, store: Store, st: _Doc,
    pending: list[Question], stop: threading.Event, advance: Callable[[int], None],
) -> None:  # fmt: skip
    if spec.threads is not None:
        set_threads(spec.threads)
    try:
        egg = A.make_grounder(load_model(spec.model, spec.device, spec.dtype), spec.config)
    except Exception as exc:  # noqa: BLE001 - a model that cannot load fails every item
        fails = {q.question_id: exc for q in pending}
        _commit(store, ctx, spec, st, A.item_rows(ctx, view, pending, [], fails))
        advance(len(pending))
        return
    ranked, failures = A.rank_all(egg, view, pending, spec.top_pages)
    if failures:
        unranked = [q for q in pending if q.question_id in failures]
        _commit(store, ctx, spec, st, A.item_rows(ctx, view, unranked, [], failures))
        advance(len(unranked))
    for batch in A.plan_batches(ranked, pending, spec.batch_size):
        if stop.is_set():
            st.stopped = True
            return
        todo = _pending(store, ctx, view.doc, batch)
        st.skipped += len(batch) - len(todo)
        advance(len(batch) - len(todo))
        if not todo:
            continue
        faults.checkpoint("answer")
        _commit(store, ctx, spec, st, _ground(egg, view, ctx, todo, ranked))
        advance(len(todo))


def _ground(
    egg: Any, view: Any, ctx: RunContext, qs: list[Question], ranked: Mapping[str, list[int]]
) -> dict:
    results, fails = [], {}
    for page, on_page in A.by_page(ranked, qs).items():
        try:
            results += A.ground_page(egg, view, page, on_page)
        except Exception as exc:  # noqa: BLE001 - per-item failure becomes a row
            fails.update({q.question_id: exc for q in on_page})
    return A.item_rows(ctx, view, qs, results, fails)
