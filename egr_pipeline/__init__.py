"""The engine: plain Python from a PDF source to committed Parquet rows, with no Prefect.

The Prefect tasks in ``tasks/`` are thin wrappers around these stages, and the CLI and the
benchmarks' plain loop call them directly. Stages, in the order a run meets them:

- :mod:`.plan` lists the source (:mod:`.sources`), keys the work (:mod:`.records`) and skips
  what the store has committed;
- :mod:`.rasterize` renders each document in the sandbox (:mod:`.sandbox`);
- :mod:`.work` answers a document in committed batches inside a model slot (:mod:`.slots`,
  :mod:`.models`, :mod:`.answering`, :mod:`.answer_rows`, :mod:`.budget`);
- :mod:`.store` writes and reads the tables (:mod:`.schemas`, :mod:`.visible`), :mod:`.duck`
  queries them, :mod:`.reviews` keeps reviewers' verdicts;
- :mod:`.liveness`, :mod:`.stopping` and :mod:`.summary` keep runs honest about how they ended;
  :mod:`.watch` turns bucket uploads into runs.

docs/architecture.md has the whole house.
"""
