"""prefect.yaml: parses, entrypoints resolve to flows, triggers and schedules validate."""

from __future__ import annotations

from pydantic import TypeAdapter

from flows.serving import REPO_ROOT, build_deployments, load_spec


def test_prefect_yaml_parses_and_entrypoints_resolve() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from prefect.flows import load_flow_from_entrypoint

    spec = load_spec(REPO_ROOT / "prefect.yaml")
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) == {"nightly-corpus-qa", "on-upload"}
    for dep in deps.values():
        path, func = dep["entrypoint"].split(":")
        assert (REPO_ROOT / path).is_file()
        flow = load_flow_from_entrypoint(f"{REPO_ROOT / path}:{func}")
        assert set(dep["parameters"]) <= set(flow.parameters.properties)
    assert deps["nightly-corpus-qa"]["schedules"][0]["cron"] == "0 2 * * *"
    (trig,) = deps["on-upload"]["triggers"]
    parsed = TypeAdapter(DeploymentTriggerTypes).validate_python(trig)
    assert parsed.expect == {"egr.object.created"}
    assert parsed.within.total_seconds() == 60 and parsed.for_each == {"prefect.resource.id"}
    assert parsed.parameters == {"key": "{{ event.payload.key }}"}


def test_serve_builds_both_deployments() -> None:
    built = {d.name: d for d in build_deployments(load_spec())}
    assert set(built) == {"nightly-corpus-qa", "on-upload"}
    assert built["nightly-corpus-qa"].schedules and built["on-upload"].triggers
    assert built["on-upload"].parameters["params"]["source"].startswith("s3://")
