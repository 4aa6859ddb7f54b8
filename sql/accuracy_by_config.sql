-- Purpose: how often each model and config is right, as reviewers judged it: the latest verdict
--          per reviewed answer (reviews_latest), counted per (model_id, config_hash) of the
--          answer. "corrected" counts as wrong. Every answer ever reviewed counts, whatever run.
-- Inputs:  the views of 00_views.sql. No variables.
-- Output:  model_id, config_hash, n_answers (answers made with it, all runs), n_reviewed,
--          n_correct, n_wrong, n_corrected, accuracy (n_correct / n_reviewed), first_run,
--          last_run.
WITH made AS (
    SELECT
        model_id,
        config_hash,
        count(*) AS n_answers,
        min(run_id) AS first_run,
        max(run_id) AS last_run
    FROM answers
    GROUP BY ALL
),
judged AS (
    SELECT
        a.model_id,
        a.config_hash,
        count(*) AS n_reviewed,
        count(*) FILTER (WHERE r.verdict = 'correct') AS n_correct,
        count(*) FILTER (WHERE r.verdict = 'wrong') AS n_wrong,
        count(*) FILTER (WHERE r.verdict = 'corrected') AS n_corrected
    FROM reviews_latest AS r
    JOIN answers AS a ON a.run_id = r.run_id AND a.work_key = r.work_key
    GROUP BY ALL
)
SELECT
    m.model_id,
    m.config_hash,
    m.n_answers,
    coalesce(j.n_reviewed, 0) AS n_reviewed,
    coalesce(j.n_correct, 0) AS n_correct,
    coalesce(j.n_wrong, 0) AS n_wrong,
    coalesce(j.n_corrected, 0) AS n_corrected,
    j.n_correct / j.n_reviewed AS accuracy,
    m.first_run,
    m.last_run
FROM made AS m
LEFT JOIN judged AS j
    ON j.model_id IS NOT DISTINCT FROM m.model_id
    AND j.config_hash IS NOT DISTINCT FROM m.config_hash
ORDER BY accuracy DESC NULLS LAST, m.model_id, m.config_hash;
