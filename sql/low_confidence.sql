-- Purpose: answers the model was unsure of even after grounding, worst first: the latest answers
--          whose log-likelihood per view read is below a floor (when the answer step scored its
--          views, answers.answer_logprob) or whose first-answer-token entropy after grounding is
--          above a threshold. The log-likelihood is the sharper signal where it exists
--          (docs/reader.md "How sure"); answers of configs that read once have only the entropy.
-- Inputs:  the views of 00_views.sql. Variables (optional): threshold - DOUBLE, entropy in nats,
--          default 1.0; min_logprob - DOUBLE, log-likelihood per view in nats, default -1.5.
-- Output:  doc_id, uri, question_id, question, answer, status, answer_logprob, entropy_before,
--          entropy_after, entropy_drop (before - after), threshold, min_logprob, run_id; ordered
--          by answer_logprob (lowest first, answers without one last), then entropy_after
--          (highest first).
WITH t AS (
    SELECT
        coalesce(CAST(getvariable('threshold') AS DOUBLE), 1.0) AS threshold,
        coalesce(CAST(getvariable('min_logprob') AS DOUBLE), -1.5) AS min_logprob
)
SELECT
    a.doc_id,
    d.uri,
    a.question_id,
    a.question,
    a.answer,
    a.status,
    a.answer_logprob,
    a.entropy_before,
    a.entropy_after,
    a.entropy_before - a.entropy_after AS entropy_drop,
    t.threshold,
    t.min_logprob,
    a.run_id
FROM answers_latest AS a
CROSS JOIN t
LEFT JOIN documents AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
WHERE a.entropy_after > t.threshold OR a.answer_logprob < t.min_logprob
ORDER BY a.answer_logprob ASC NULLS LAST, a.entropy_after DESC, a.doc_id, a.question_id;
