-- Purpose: the evidence behind the latest answers of a document: every ranked box with its
--          page position in PDF points, its score and the text under it.
-- Inputs:  the views of 00_views.sql. Variables: doc - a doc_id, a doc_id prefix or a file
--          name (optional: without it, every document is listed).
-- Output:  doc_id, uri, question_id, question, answer, rank, page, round, block, x0_pt, y0_pt,
--          x1_pt, y1_pt, x0_n, y0_n, x1_n, y1_n, score, spatial_entropy, evidence_text,
--          crop_bytes (size of the stored PNG crop, null when none), run_id.
SELECT
    a.doc_id,
    d.uri,
    a.question_id,
    a.question,
    a.answer,
    e.rank,
    e.page,
    e.round,
    e.block,
    e.x0_pt,
    e.y0_pt,
    e.x1_pt,
    e.y1_pt,
    e.x0_n,
    e.y0_n,
    e.x1_n,
    e.y1_n,
    e.score,
    e.spatial_entropy,
    e.evidence_text,
    octet_length(e.crop_png) AS crop_bytes,
    a.run_id
FROM answers_latest AS a
JOIN evidence AS e ON e.run_id = a.run_id AND e.work_key = a.work_key
LEFT JOIN documents AS d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
WHERE getvariable('doc') IS NULL
    OR starts_with(a.doc_id, CAST(getvariable('doc') AS VARCHAR))
    OR d.uri = CAST(getvariable('doc') AS VARCHAR)
    OR ends_with(d.uri, '/' || CAST(getvariable('doc') AS VARCHAR))
ORDER BY d.uri, a.doc_id, a.question_id, e.rank;
