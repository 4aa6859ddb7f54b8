-- Purpose: what failed, grouped by status: items (document x question) whose status is neither
--          'ok' nor 'no_evidence', per run, with how many documents and one example error.
-- Inputs:  the views of 00_views.sql. Variables (optional): run - a run_id; default all runs.
-- Output:  run_id, status, n_items, n_documents, example_error.
SELECT
    run_id,
    status,
    count(*) AS n_items,
    count(DISTINCT doc_id) AS n_documents,
    min(error) AS example_error
FROM answers
WHERE status NOT IN ('ok', 'no_evidence')
    AND (getvariable('run') IS NULL OR run_id = CAST(getvariable('run') AS VARCHAR))
GROUP BY run_id, status
ORDER BY run_id, n_items DESC, status;
