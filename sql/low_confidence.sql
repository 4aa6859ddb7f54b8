-- Purpose: answers the model was unsure of even after grounding: the latest answers whose
--          first-answer-token entropy after grounding is above a threshold (nats), worst first.
-- Inputs:  the views of 00_views.sql. Variables (optional): threshold - DOUBLE, default 1.0.
-- Output:  doc_id, uri, question_id, question, answer, status, entropy_before, entropy_after,
--          entropy_drop (before - after), threshold, run_id.
SELECT
    a.doc_id,
    d.uri,
    a.question_id,
    a.question,
    a.answer,
    a.status,
    a.entropy_before,
    a.entropy_after,
    a.entropy_before - a.entropy_after AS entropy_drop,
    coalesce(CAST(getvariable('threshold') AS DOUBLE), 1.0) AS threshold,
    a.run_id
FROM answers_latest AS a
LEFT JOIN documents AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
WHERE a.entropy_after > coalesce(CAST(getvariable('threshold') AS DOUBLE), 1.0)
ORDER BY a.entropy_after DESC, a.doc_id, a.question_id;
