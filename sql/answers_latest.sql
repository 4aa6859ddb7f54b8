-- Purpose: the latest answer to every question on every document (what a reader wants to see).
--          "Latest" = the row written last for (doc_id, question_id), whatever run, model or
--          config produced it; older answers stay in the answers view.
-- Inputs:  the views of 00_views.sql. Variables (optional): doc - a doc_id, a doc_id prefix or
--          a file name; restricts the output to that document.
-- Output:  doc_id, uri, question_id, question, answer, status, page, entropy_before,
--          entropy_after, n_evidence, stop_reason, run_id, model_id, config_hash, written_at.
SELECT
    a.doc_id,
    d.uri,
    a.question_id,
    a.question,
    a.answer,
    a.status,
    a.page,
    a.entropy_before,
    a.entropy_after,
    a.n_evidence,
    a.stop_reason,
    a.run_id,
    a.model_id,
    a.config_hash,
    a.written_at
FROM answers_latest AS a
LEFT JOIN documents AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
WHERE getvariable('doc') IS NULL
    OR starts_with(a.doc_id, CAST(getvariable('doc') AS VARCHAR))
    OR d.uri = CAST(getvariable('doc') AS VARCHAR)
    OR ends_with(d.uri, '/' || CAST(getvariable('doc') AS VARCHAR))
ORDER BY d.uri, a.doc_id, a.question_id;
