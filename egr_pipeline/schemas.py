"""Explicit pyarrow schemas of the egr output tables (the data contract).

Every row of every table carries the same provenance columns (:data:`PROVENANCE`): ``run_id``,
``model_id``, ``config_hash``, ``egr_version``, plus ``group_id`` (the committed write group the
row belongs to) and ``written_at`` (when that group was committed; "latest" means the largest).
Rows produced for one work item also carry its ``work_key``.

Boxes are stored twice: normalised to the displayed page (``*_n``, origin top-left, ``[0, 1]``)
and in PDF points of the displayed page (``*_pt``, origin top-left). The full contract, with the
meaning of every column, is in ``docs/data-contract.md``.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped when a column is added, removed or changes meaning.
#: 2: documents.n_pages_processed, documents.truncated; 3: answers.answer_round, answers.rounds,
#: evidence.crop_* (the crop an answer was read through); 4: answers.reads (the answer step's
#: views; null in parts written before it); 5: answers.answer_logprob (the answer step's confidence)
SCHEMA_VERSION = "5"

_TS = pa.timestamp("us", tz="UTC")

PROVENANCE: list[pa.Field] = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("model_id", pa.string()),
    pa.field("config_hash", pa.string()),
    pa.field("egr_version", pa.string(), nullable=False),
    pa.field("written_at", _TS, nullable=False),
]

_BOX_N = [pa.field(f"{c}_n", pa.float64()) for c in ("x0", "y0", "x1", "y1")]
_BOX_PT = [pa.field(f"{c}_pt", pa.float64()) for c in ("x0", "y0", "x1", "y1")]
_CROP_N = [pa.field(f"crop_{c}_n", pa.float64()) for c in ("x0", "y0", "x1", "y1")]
_CROP_PT = [pa.field(f"crop_{c}_pt", pa.float64()) for c in ("x0", "y0", "x1", "y1")]


def _schema(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(
        [*PROVENANCE, *fields],
        metadata={"egr.table": table, "egr.schema_version": SCHEMA_VERSION},
    )


RUNS = _schema(
    [
        pa.field("started_at", _TS, nullable=False),
        pa.field("finished_at", _TS),
        pa.field("phase", pa.string(), nullable=False),  # "begin" | "end"
        pa.field("status", pa.string(), nullable=False),  # running | ok | partial | failed
        pa.field("source", pa.string()),
        pa.field("question_set", pa.string()),  # JSON list of {id, text, pages?}
        pa.field("model_revision", pa.string()),
        pa.field("config", pa.string()),  # JSON of EgrConfig
        pa.field("counts", pa.string()),  # JSON {"answers": n, "ok": n, ...}
        pa.field("error", pa.string()),
    ],
    "runs",
)

DOCUMENTS = _schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # sha256 hex of the PDF bytes
        pa.field("uri", pa.string(), nullable=False),
        pa.field("bytes", pa.int64()),
        pa.field("n_pages", pa.int32()),  # pages in the file
        pa.field("n_pages_processed", pa.int32()),  # pages rendered and used by this run
        pa.field("truncated", pa.bool_()),  # n_pages > max_pages: the first pages were used
        pa.field("title", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # ok | partial | encrypted | corrupt | ...
        pa.field("error", pa.string()),
    ],
    "documents",
)

PAGES = _schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),  # 0-based
        pa.field("width_pt", pa.float64(), nullable=False),  # displayed page (after /Rotate)
        pa.field("height_pt", pa.float64(), nullable=False),
        pa.field("rotation", pa.int16()),
        pa.field("dpi", pa.float64()),
        pa.field("width_px", pa.int32()),
        pa.field("height_px", pa.int32()),
    ],
    "pages",
)

ANSWERS = _schema(
    [
        pa.field("work_key", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string()),
        pa.field("page", pa.int32()),  # null when the item failed before a page was chosen
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("entropy_before", pa.float64()),  # first-answer-token entropy, page only
        pa.field("entropy_after", pa.float64()),  # ... with the final crops
        pa.field("n_rounds", pa.int32()),
        pa.field("n_evidence", pa.int32()),
        pa.field("stop_reason", pa.string()),
        pa.field("answer_round", pa.int32()),  # the round whose inputs the answer was read from
        pa.field("rounds", pa.string()),  # JSON [{round, entropy, spatial_entropy, crops}]
        pa.field("reads", pa.string()),  # JSON [{scale, page, answer, logprob}]; null: one read
        pa.field("answer_logprob", pa.float64()),  # the answer's log-likelihood per view read
        pa.field("latency_ms", pa.float64()),
        pa.field("timings", pa.string()),  # JSON {stage: ms}
    ],
    "answers",
)

EVIDENCE = _schema(
    [
        pa.field("work_key", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),  # 1 = strongest
        pa.field("page", pa.int32(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("block", pa.int32(), nullable=False),  # 0 = page view, 1.. = crops
        *_BOX_N,
        *_BOX_PT,
        *_CROP_N,  # the crop the answer was read through (null: read from the page view)
        *_CROP_PT,
        pa.field("score", pa.float64()),
        pa.field("spatial_entropy", pa.float64()),  # SE of the round the region came from
        pa.field("evidence_text", pa.string()),
        pa.field("crop_png", pa.binary()),
        pa.field("text_source", pa.string()),  # text_layer | none (page without a text layer)
    ],
    "evidence",
)

MAPS = _schema(
    [
        pa.field("work_key", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("block", pa.int32(), nullable=False),  # image index the grid belongs to
        pa.field("span", pa.int32(), nullable=False),  # index of the grid within the round
        pa.field("kind", pa.string()),  # view | tile | thumbnail | global
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("cols", pa.int32(), nullable=False),
        pa.field("scale", pa.float64(), nullable=False),  # raw = scores * scale
        pa.field("scores", pa.list_(pa.float16()), nullable=False),  # (R*C,) row-major
        *_BOX_N,  # where the grid lies on the page
        *_BOX_PT,
        pa.field("spatial_entropy", pa.float64()),
        pa.field("entropy", pa.float64()),
    ],
    "maps",
)

#: The tables written once per work group, in write order.
GROUP_TABLES: dict[str, pa.Schema] = {
    "documents": DOCUMENTS,
    "pages": PAGES,
    "answers": ANSWERS,
    "evidence": EVIDENCE,
    "maps": MAPS,
}

#: The commit markers: one small file per committed group, one row per work key.
COMMITS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("work_key", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("committed_at", _TS, nullable=False),
    ],
    metadata={"egr.table": "_commits", "egr.schema_version": SCHEMA_VERSION},
)

#: Reviewers' verdicts on answers (``egr review``). Not a write-group table: each verdict is one
#: small Parquet file of its own, written atomically; nothing is ever updated or deleted, the
#: latest verdict per answer wins (the ``reviews_latest`` view). The answer is identified by its
#: ``run_id`` and ``work_key``; ``model_id`` and ``config_hash`` are the answer's.
REVIEWS = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),  # the reviewed answer's run
        pa.field("work_key", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("answer", pa.string()),  # the answer as the reviewer saw it
        pa.field("verdict", pa.string(), nullable=False),  # correct | wrong | corrected
        pa.field("corrected_answer", pa.string()),  # the right answer (verdict corrected)
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("reviewed_at", _TS, nullable=False),
        pa.field("egr_version", pa.string(), nullable=False),
    ],
    metadata={"egr.table": "reviews", "egr.schema_version": SCHEMA_VERSION},
)

ALL_TABLES: dict[str, pa.Schema] = {"runs": RUNS, **GROUP_TABLES, "reviews": REVIEWS}
