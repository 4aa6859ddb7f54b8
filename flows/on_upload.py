"""on-upload: run corpus-qa on the one object whose upload triggered this run.

The ``on-upload`` deployment's trigger (``prefect.yaml``) fires on an ``egr.object.created`` event
(emitted by ``egr watch``) and passes the object's key and bucket from the event payload.
``params.source`` is the configured ``s3://bucket/prefix``. An event is data, not a command: its
key must name a ``.pdf`` object under that prefix (no scheme, no ``..``, no other bucket), see
:func:`egr_pipeline.watch.upload_source`; anything else is rejected with the reason in the run's log
and nothing is read. Done work is skipped as in any corpus-qa run, so a repeated event for the
same bytes adds nothing.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from egr_pipeline.summary import RunSummary
from egr_pipeline.watch import RejectedUpload, upload_source
from flows.corpus_qa import corpus_qa
from flows.params import RunParams


@flow(name="on-upload", log_prints=False)
def on_upload(key: str, params: RunParams, bucket: str | None = None) -> RunSummary | None:
    """Answer the run's questions about the uploaded PDF ``key`` under ``params.source``;
    None when the event was rejected (the reason is logged)."""
    try:
        source = upload_source(params.source, key, bucket)
    except RejectedUpload as exc:
        get_run_logger().error("upload event rejected, nothing read: %s", exc)
        return None
    return corpus_qa(params.model_copy(update={"source": source}))
