-- Purpose: the answers still waiting for a reviewer: latest answers that have an answer text
--          and no verdict yet, least confident first - the order `egr review` shows them in:
--          lowest log-likelihood per view (answer_logprob) first, then answers without one by
--          highest first-token entropy after grounding.
-- Inputs:  the views of 00_views.sql. Variables (optional): run - that run's answers instead of
--          the latest ones.
-- Output:  doc_id, uri, question_id, question, answer, status, answer_logprob, entropy_after,
--          run_id, work_key, model_id, config_hash.
WITH scope AS (
    SELECT run_id, work_key, doc_id, question_id, question, answer, status, answer_logprob,
        entropy_after, model_id, config_hash
    FROM answers_latest
    WHERE getvariable('run') IS NULL
    UNION ALL
    SELECT run_id, work_key, doc_id, question_id, question, answer, status, answer_logprob,
        entropy_after, model_id, config_hash
    FROM answers
    WHERE run_id = CAST(getvariable('run') AS VARCHAR)
)
SELECT
    s.doc_id,
    d.uri,
    s.question_id,
    s.question,
    s.answer,
    s.status,
    s.answer_logprob,
    s.entropy_after,
    s.run_id,
    s.work_key,
    s.model_id,
    s.config_hash
FROM scope AS s
LEFT JOIN documents AS d ON d.run_id = s.run_id AND d.doc_id = s.doc_id
LEFT JOIN reviews_latest AS r ON r.run_id = s.run_id AND r.work_key = s.work_key
WHERE r.verdict IS NULL AND s.answer IS NOT NULL
ORDER BY s.answer_logprob ASC NULLS LAST, s.entropy_after DESC NULLS LAST, d.uri, s.doc_id, s.question_id;
