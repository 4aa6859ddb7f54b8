-- Purpose: how often the model is right, per question, as reviewers judged it: the latest
--          verdict per reviewed answer (reviews_latest), counted per question_id. "corrected"
--          counts as wrong (the reviewer had to supply the answer).
-- Inputs:  the views of 00_views.sql. Variables (optional): run - only answers of this run.
-- Output:  question_id, question, n_reviewed, n_correct, n_wrong, n_corrected, accuracy
--          (n_correct / n_reviewed), n_answers (answers_latest rows of the question, or the
--          run's answers when run is set), n_unreviewed (of those, answered and not reviewed).
WITH scope AS (
    SELECT run_id, work_key, question_id, question, answer
    FROM answers_latest
    WHERE getvariable('run') IS NULL
    UNION ALL
    SELECT run_id, work_key, question_id, question, answer
    FROM answers
    WHERE run_id = CAST(getvariable('run') AS VARCHAR)
),
judged AS (
    SELECT s.question_id, s.question, s.answer, r.verdict
    FROM scope AS s
    LEFT JOIN reviews_latest AS r ON r.run_id = s.run_id AND r.work_key = s.work_key
)
SELECT
    question_id,
    any_value(question) AS question,
    count(verdict) AS n_reviewed,
    count(*) FILTER (WHERE verdict = 'correct') AS n_correct,
    count(*) FILTER (WHERE verdict = 'wrong') AS n_wrong,
    count(*) FILTER (WHERE verdict = 'corrected') AS n_corrected,
    CASE WHEN count(verdict) > 0
        THEN count(*) FILTER (WHERE verdict = 'correct') / count(verdict)
    END AS accuracy,
    count(*) AS n_answers,
    count(*) FILTER (WHERE verdict IS NULL AND answer IS NOT NULL) AS n_unreviewed
FROM judged
GROUP BY question_id
ORDER BY accuracy ASC NULLS LAST, question_id;
