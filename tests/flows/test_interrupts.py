"""What an abrupt stop leaves behind: no Prefect server process, no taken model slot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def test_a_held_gpu_slot_is_returned_by_release_held_slots(prefect_server: str) -> None:
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    from tasks.limits import ensure_gpu_limit, gpu_slot, release_held_slots

    name = "egr-test-release"

    def active() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(name).active_slots

    @task
    def hold_then_stop_abruptly() -> tuple[int, int, int]:
        with gpu_slot(name):
            held = active()
            released = release_held_slots()  # what the Ctrl-C handler does before os._exit
            return held, released, active()

    @flow
    def f() -> tuple[int, int, int]:
        ensure_gpu_limit(name, 1)
        return hold_then_stop_abruptly()

    held, released, after = f()
    assert (held, released, after) == (1, 1, 0)
    assert release_held_slots() == 0  # nothing left to release


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_killed_process_leaves_no_ephemeral_server(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from flows.ephemeral import start_ephemeral_server
        import prefect.server.api.server as s
        start_ephemeral_server()
        print(s.SubprocessASGIServer().server_process.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        server_pid = int(proc.stdout.readline())
        os.kill(server_pid, 0)  # the server runs
        proc.kill()  # SIGKILL: no atexit, no finally
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(server_pid, signal.SIGKILL)
            pytest.fail("the server outlived its killed parent")
    finally:
        if proc.poll() is None:
            proc.kill()
