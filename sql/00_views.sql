-- Purpose: create the egr views over one output root; every other sql/*.sql file reads them.
-- Inputs:  ${root} - the output root (a local folder or s3://bucket/prefix). egr substitutes it
--          inside the single-quoted literals below, doubling any single quote, so a root cannot
--          break out of the string. To use this file by hand: replace ${root}, then run it in
--          duckdb (for s3:// register an fsspec filesystem or load httpfs first).
-- Output:  views commits, visible, runs, documents, pages, answers, answers_all, evidence,
--          maps, answers_latest, reviews, reviews_latest.
--          Only rows of committed write groups are visible (a group's parts are written before
--          its commit marker, so a crashed write never shows). answers, evidence and maps keep
--          one final row per work key (visible: the first final commit wins; earlier retryable
--          tries stay as history; a concurrent run's duplicate is hidden); answers_all keeps
--          every committed answers row (answers written before a column existed read it as
--          null). documents and pages keep one row
--          per (run_id, doc_id[, page]). runs keeps one row per run: the "end" row once the run
--          finished, else the "begin" row (status 'running'). answers_latest keeps, for every
--          (doc_id, question_id), the row written last (largest written_at, then run_id).
--          reviews holds every verdict of `egr review` (one file per verdict, written atomically,
--          so no commit marker); it exists, empty, before the first verdict. reviews_latest keeps
--          the newest verdict per reviewed answer (run_id, work_key).

CREATE OR REPLACE VIEW commits AS
SELECT *
FROM read_parquet('${root}/_commits/*/*.parquet', hive_partitioning = true);

-- The (group_id, work_key) pairs readers see; the same rule as egr_pipeline/visible.py.
CREATE OR REPLACE VIEW visible AS
WITH c AS (
    SELECT
        group_id,
        work_key,
        committed_at,
        status NOT IN ('failed', 'timeout', 'out_of_memory', 'crashed', 'io_error') AS final,
        row_number() OVER (
            PARTITION BY work_key,
            status NOT IN ('failed', 'timeout', 'out_of_memory', 'crashed', 'io_error')
            ORDER BY committed_at, run_id
        ) AS nth
    FROM commits
),
w AS (
    SELECT
        *,
        min(CASE WHEN final THEN committed_at END) OVER (PARTITION BY work_key) AS first_final_at
    FROM c
)
SELECT group_id, work_key
FROM w
WHERE (final AND nth = 1) OR (NOT final AND (first_final_at IS NULL OR committed_at < first_final_at));

CREATE OR REPLACE VIEW runs AS
SELECT *
FROM read_parquet('${root}/runs/*/*.parquet', hive_partitioning = true, union_by_name = true)
QUALIFY row_number() OVER (
    PARTITION BY run_id ORDER BY (phase = 'end') DESC, written_at DESC
) = 1;

CREATE OR REPLACE VIEW documents AS
SELECT *
FROM read_parquet('${root}/documents/*/*.parquet', hive_partitioning = true, union_by_name = true)
WHERE group_id IN (SELECT group_id FROM commits)
QUALIFY row_number() OVER (PARTITION BY run_id, doc_id ORDER BY written_at DESC) = 1;

CREATE OR REPLACE VIEW pages AS
SELECT *
FROM read_parquet('${root}/pages/*/*.parquet', hive_partitioning = true, union_by_name = true)
WHERE group_id IN (SELECT group_id FROM commits)
QUALIFY row_number() OVER (PARTITION BY run_id, doc_id, page ORDER BY written_at DESC) = 1;

-- The typed empty SELECT (no rows) adds the columns of schemas 4 and 5, null, to roots written
-- before them, so that every query file works on them.
CREATE OR REPLACE VIEW answers_all AS
SELECT *
FROM (
    SELECT *
    FROM read_parquet('${root}/answers/*/*.parquet', hive_partitioning = true, union_by_name = true)
    UNION ALL BY NAME
    SELECT
        CAST(NULL AS VARCHAR) AS reads,
        CAST(NULL AS DOUBLE) AS answer_logprob
    WHERE false
)
WHERE group_id IN (SELECT group_id FROM commits);

CREATE OR REPLACE VIEW answers AS
SELECT *
FROM answers_all
WHERE (group_id, work_key) IN (SELECT (group_id, work_key) FROM visible);

CREATE OR REPLACE VIEW evidence AS
SELECT *
FROM read_parquet('${root}/evidence/*/*.parquet', hive_partitioning = true, union_by_name = true)
WHERE (group_id, work_key) IN (SELECT (group_id, work_key) FROM visible);

CREATE OR REPLACE VIEW maps AS
SELECT *
FROM read_parquet('${root}/maps/*/*.parquet', hive_partitioning = true, union_by_name = true)
WHERE (group_id, work_key) IN (SELECT (group_id, work_key) FROM visible);

CREATE OR REPLACE VIEW answers_latest AS
SELECT *
FROM answers
QUALIFY row_number() OVER (
    PARTITION BY doc_id, question_id ORDER BY written_at DESC, run_id DESC
) = 1;

-- The typed empty SELECT keeps the columns and types when no verdict exists yet; allow_empty
-- then yields a single placeholder column "empty", dropped by the outer COLUMNS filter.
CREATE OR REPLACE VIEW reviews AS
SELECT COLUMNS(lambda c: c <> 'empty')
FROM (
    SELECT
        CAST(NULL AS VARCHAR) AS review_id,
        CAST(NULL AS VARCHAR) AS run_id,
        CAST(NULL AS VARCHAR) AS work_key,
        CAST(NULL AS VARCHAR) AS doc_id,
        CAST(NULL AS VARCHAR) AS question_id,
        CAST(NULL AS VARCHAR) AS model_id,
        CAST(NULL AS VARCHAR) AS config_hash,
        CAST(NULL AS VARCHAR) AS answer,
        CAST(NULL AS VARCHAR) AS verdict,
        CAST(NULL AS VARCHAR) AS corrected_answer,
        CAST(NULL AS VARCHAR) AS reviewer,
        CAST(NULL AS TIMESTAMPTZ) AS reviewed_at,
        CAST(NULL AS VARCHAR) AS egr_version
    WHERE false
    UNION ALL BY NAME
    SELECT *
    FROM read_parquet(
        '${root}/reviews/*/*.parquet',
        hive_partitioning = true, union_by_name = true, allow_empty = true
    )
);

CREATE OR REPLACE VIEW reviews_latest AS
SELECT *
FROM reviews
QUALIFY row_number() OVER (
    PARTITION BY run_id, work_key ORDER BY reviewed_at DESC, review_id DESC
) = 1;
