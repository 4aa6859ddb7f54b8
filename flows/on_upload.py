"""on-upload: run corpus-qa on the one object whose upload triggered this run.

The ``on-upload`` deployment's trigger (``prefect.yaml``) fires on an ``egr.object.created`` event
(emitted by ``egr watch``) and passes the object's key; ``params.source`` is the bucket (or a
prefix above the key), so the run's source is ``<params.source>/<key>``. Done work is skipped as
in any corpus-qa run, so a repeated event for the same bytes adds nothing.
"""

from __future__ import annotations

from prefect import flow

from flows.corpus_qa import corpus_qa
from flows.params import RunParams
from tasks.io.summary import RunSummary


@flow(name="on-upload", log_prints=False)
def on_upload(key: str, params: RunParams) -> RunSummary:
    """Answer the run's questions about the uploaded PDF ``key`` under ``params.source``."""
    source = key if "://" in key else f"{params.source.rstrip('/')}/{key.lstrip('/')}"
    return corpus_qa(params.model_copy(update={"source": source}))
