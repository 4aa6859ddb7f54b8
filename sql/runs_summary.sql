-- Purpose: one line per run: what it was, how it ended, and what it produced.
-- Inputs:  the views of 00_views.sql. No variables.
-- Output:  run_id, status, started_at, finished_at, duration_s, model_id, config_hash,
--          egr_version, n_documents, n_items, n_ok, n_no_evidence, n_failed, n_evidence,
--          mean_entropy_before, mean_entropy_after, mean_latency_ms (finite values only).
WITH a AS (
    SELECT
        run_id,
        count(DISTINCT doc_id) AS n_documents,
        count(*) AS n_items,
        count(*) FILTER (WHERE status = 'ok') AS n_ok,
        count(*) FILTER (WHERE status = 'no_evidence') AS n_no_evidence,
        count(*) FILTER (WHERE status NOT IN ('ok', 'no_evidence')) AS n_failed,
        sum(n_evidence) AS n_evidence,
        avg(entropy_before) FILTER (WHERE isfinite(entropy_before)) AS mean_entropy_before,
        avg(entropy_after) FILTER (WHERE isfinite(entropy_after)) AS mean_entropy_after,
        avg(latency_ms) FILTER (WHERE isfinite(latency_ms)) AS mean_latency_ms
    FROM answers
    GROUP BY run_id
)
SELECT
    r.run_id,
    r.status,
    r.started_at,
    r.finished_at,
    date_diff('millisecond', r.started_at, r.finished_at) / 1000.0 AS duration_s,
    r.model_id,
    r.config_hash,
    r.egr_version,
    coalesce(a.n_documents, 0) AS n_documents,
    coalesce(a.n_items, 0) AS n_items,
    coalesce(a.n_ok, 0) AS n_ok,
    coalesce(a.n_no_evidence, 0) AS n_no_evidence,
    coalesce(a.n_failed, 0) AS n_failed,
    coalesce(a.n_evidence, 0) AS n_evidence,
    a.mean_entropy_before,
    a.mean_entropy_after,
    a.mean_latency_ms
FROM runs AS r
LEFT JOIN a ON a.run_id = r.run_id
ORDER BY r.started_at, r.run_id;
