"""Option types shared by several commands."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class StopRuleOption(StrEnum):
    """``--stop-rule`` choices (``egr_core.config.EgrConfig.stop_rule``)."""

    spatial_entropy = "spatial_entropy"
    fixed = "fixed"
    confidence = "confidence"


#: ``--stop-rule`` and ``--stop-tau``, as ``egr run`` and ``egr ask`` take them.
StopRuleArg = Annotated[
    StopRuleOption | None,
    typer.Option("--stop-rule", help="When zooming stops (default: the model's, spatial_entropy)."),
]
StopTauArg = Annotated[
    float | None,
    typer.Option("--stop-tau", help="Entropy threshold (nats) of --stop-rule confidence.", min=0),
]


#: ``--endpoint-url`` and ``--profile``: the storage options of every command that reads or
#: writes an object store (run, query, show, watch, serve, review). Unset, the standard
#: environment applies: AWS_ENDPOINT_URL(_S3), AWS_PROFILE, AWS_* credentials, FSSPEC_S3_*.
EndpointUrlArg = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="S3-compatible endpoint (MinIO, ...); default: AWS_ENDPOINT_URL or AWS config.",
    ),
]
ProfileArg = Annotated[
    str | None,
    typer.Option("--profile", help="AWS profile for s3:// paths; default: AWS_PROFILE."),
]
