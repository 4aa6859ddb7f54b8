"""What an abrupt stop leaves behind: no Prefect server process (model slots are file locks,
freed with the process: tests/flows/faults and tests/tasks cover them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


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


def test_ctrl_c_on_egr_run_is_one_line_exit_130_and_leaves_no_process(
    tiny_model: str, corpus_tools, tmp_path
) -> None:
    psutil = pytest.importorskip("psutil")
    write_corpus, write_questions = corpus_tools
    write_corpus(tmp_path / "docs", ("invoice", "form"))
    write_questions(tmp_path / "q.json", n=2)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), EGR_DEBUG="")
    args = [sys.executable, "-m", "egr", "run", "docs", "-q", "q.json", "-o", "out",
            "--model", tiny_model, "--max-rounds", "1", "--render-workers", "1"]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "out" / "runs").exists():  # the flow has begun its run
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never began"
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the Prefect server (and render workers)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    # a clean stop (issue 13): the batch in flight is committed, the run row says cancelled
    assert lines[-1].startswith("cancelled:") and "next run resumes" in lines[-1], err
    assert all("stopping after the batch in flight" in ln for ln in lines[:-1]), err
    assert "Traceback" not in out + err
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [p.cmdline()[:4] for p in alive]


def test_ctrl_c_on_egr_serve_stops_it_quietly_and_then_its_server(tmp_path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: the local Prefect server must not
    die first (it used to, and `egr serve` then logged connection errors while shutting down)."""
    psutil = pytest.importorskip("psutil")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), EGR_DEBUG="")
    from flows.serving import REPO_ROOT

    proc = subprocess.Popen(
        [sys.executable, "-m", "egr", "serve", "--prefect-yaml", str(REPO_ROOT / "prefect.yaml")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgrp()),
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # "started a local Prefect server: ..."
        assert "started a local Prefect server" in first, first
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in rest and "ConnectError" not in rest, rest
    assert len(rest.splitlines()) < 30, rest
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [p.cmdline()[:4] for p in alive]
