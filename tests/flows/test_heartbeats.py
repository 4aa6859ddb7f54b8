"""Runs started by egr (``run_corpus_qa``) skip Prefect's flow-run heartbeats (egr's own lease
detects dead runs); everything else keeps Prefect's setting."""

from __future__ import annotations

from prefect import flow
from prefect.settings import get_current_settings

from flows import corpus_qa


@flow
def _seen_heartbeat() -> int | None:
    return get_current_settings().flows.heartbeat_frequency


def test_flows_started_by_egr_send_no_heartbeats(prefect_server: str) -> None:
    default = get_current_settings().flows.heartbeat_frequency
    assert default is not None and _seen_heartbeat() == default
    with corpus_qa._no_flow_heartbeats():
        assert _seen_heartbeat() is None
    assert get_current_settings().flows.heartbeat_frequency == default
