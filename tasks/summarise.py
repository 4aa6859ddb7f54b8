"""Summary task: the run's table as a Prefect artifact (the CLI prints the same rows)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from egr_pipeline.summary import RunSummary


@task(name="summarise", cache_policy=NO_CACHE)
def publish_summary(summary: RunSummary) -> RunSummary:
    """Publish the per-document table (plus a TOTAL row) as the run's table artifact."""
    create_table_artifact(
        key="egr-run-summary",
        table=summary.table(),
        description=f"{summary.headline()}\n\nTables under `{summary.out}`.",
    )
    return summary
