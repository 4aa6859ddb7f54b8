"""prefect.yaml: parses, entrypoints resolve to flows, triggers and schedules validate, and
``prefect deploy --all`` registers both deployments (and the trigger's automation) on a server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert parsed.parameters == {
        "key": "{{ event.payload.key }}",
        "bucket": "{{ event.payload.bucket }}",
    }


def test_serve_builds_both_deployments() -> None:
    built = {d.name: d for d in build_deployments(load_spec())}
    assert set(built) == {"nightly-corpus-qa", "on-upload"}
    assert built["nightly-corpus-qa"].schedules and built["on-upload"].triggers
    assert built["on-upload"].parameters["params"]["source"].startswith("s3://")


def test_prefect_deploy_all_registers_both_deployments(prefect_server: str, tmp_path: Path) -> None:
    """``prefect --no-prompt deploy --all`` against the test server, as an operator runs it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        if not any(p.name == "egr-gpu" for p in client.read_work_pools()):
            client.create_work_pool(
                WorkPoolCreate(
                    name="egr-gpu", type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "EGR_REPO_DIR": str(REPO_ROOT),
           "PREFECT_HOME": str(tmp_path / "prefect-home")}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("corpus-qa/nightly-corpus-qa")
        upload = client.read_deployment_by_name("on-upload/on-upload")
        automations = client.read_automations_by_name("egr-on-upload")
        # The server is shared by the session: leave no deployment or automation behind (the
        # served on-upload deployment of test_s3_upload has the same name).
        for auto in automations:
            client.delete_automation(auto.id)
        client.delete_deployment(nightly.id)
        client.delete_deployment(upload.id)
    assert nightly.work_pool_name == upload.work_pool_name == "egr-gpu"
    assert nightly.entrypoint == "flows/corpus_qa.py:corpus_qa"
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert nightly.parameters["params"]["source"] == "s3://egr-inbox/incoming"
    assert upload.parameters["params"]["out"] == "egr-out/uploads"
    assert upload.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}
    ]
    (auto,) = automations
    assert auto.trigger.expect == {"egr.object.created"}
    assert auto.actions[0].deployment_id == upload.id
