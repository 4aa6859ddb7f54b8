-- Purpose: the nightly diff: answers that changed between two runs, for the (doc_id,
--          question_id) pairs both runs answered. A change is a different answer text (after
--          trimming) or a different status.
-- Inputs:  the views of 00_views.sql. Variables (optional): run_a (the older run) and run_b (the
--          newer one); by default the two most recently started runs that committed results.
-- Output:  doc_id, uri, question_id, question, run_a, run_b, answer_a, answer_b, status_a,
--          status_b, entropy_after_a, entropy_after_b, change ('answer' | 'status' | 'both').
WITH ranked AS (
    SELECT run_id, row_number() OVER (ORDER BY started_at DESC, run_id DESC) AS k
    FROM runs
    WHERE run_id IN (SELECT DISTINCT run_id FROM commits)
),
pick AS (
    SELECT
        coalesce(CAST(getvariable('run_a') AS VARCHAR), (SELECT run_id FROM ranked WHERE k = 2))
            AS run_a,
        coalesce(CAST(getvariable('run_b') AS VARCHAR), (SELECT run_id FROM ranked WHERE k = 1))
            AS run_b
),
per_run AS (
    SELECT *
    FROM answers
    WHERE run_id IN ((SELECT run_a FROM pick), (SELECT run_b FROM pick))
    QUALIFY row_number() OVER (
        PARTITION BY run_id, doc_id, question_id ORDER BY written_at DESC
    ) = 1
),
a AS (SELECT * FROM per_run WHERE run_id = (SELECT run_a FROM pick)),
b AS (SELECT * FROM per_run WHERE run_id = (SELECT run_b FROM pick)),
changed AS (
    SELECT
        a.doc_id,
        a.question_id,
        b.question,
        a.run_id AS run_a,
        b.run_id AS run_b,
        a.answer AS answer_a,
        b.answer AS answer_b,
        a.status AS status_a,
        b.status AS status_b,
        a.entropy_after AS entropy_after_a,
        b.entropy_after AS entropy_after_b,
        trim(coalesce(a.answer, '')) IS DISTINCT FROM trim(coalesce(b.answer, '')) AS answer_changed,
        a.status IS DISTINCT FROM b.status AS status_changed
    FROM a
    JOIN b ON a.doc_id = b.doc_id AND a.question_id = b.question_id
)
SELECT
    c.doc_id,
    d.uri,
    c.question_id,
    c.question,
    c.run_a,
    c.run_b,
    c.answer_a,
    c.answer_b,
    c.status_a,
    c.status_b,
    c.entropy_after_a,
    c.entropy_after_b,
    CASE
        WHEN c.answer_changed AND c.status_changed THEN 'both'
        WHEN c.answer_changed THEN 'answer'
        ELSE 'status'
    END AS change
FROM changed AS c
LEFT JOIN documents AS d ON d.run_id = c.run_b AND d.doc_id = c.doc_id
WHERE c.answer_changed OR c.status_changed
ORDER BY d.uri, c.doc_id, c.question_id;
