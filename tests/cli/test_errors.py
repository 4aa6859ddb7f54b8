"""Every expected failure of a command is one line on stderr, with the exit code of its kind
(egr/errors.py, README "Exit codes"), before Prefect starts, and leaves nothing behind. Each
test runs the real entry point in a subprocess (``python -m egr``); none starts Prefect."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from egr_cli import Egr, one_line

from egr.errors import OUTPUT, STORAGE, USAGE

QUESTIONS = "- id: total\n  text: What is the total?\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """``docs/one.pdf``, ``q.yaml``, an empty folder and a plain file, in ``tmp_path``."""
    import pymupdf

    (tmp_path / "docs").mkdir()
    with pymupdf.open() as pdf:
        pdf.new_page().insert_text((72, 72), "Total: $108")
        pdf.save(tmp_path / "docs" / "one.pdf")
    (tmp_path / "q.yaml").write_text(QUESTIONS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


RUN = ["run", "docs", "-q", "q.yaml"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["run", "/nonexistent/x", "-q", "q.yaml", "-o", "out"], USAGE,
         ["SOURCE /nonexistent/x", "no such file or folder"]),
        (["run", "empty", "-q", "q.yaml", "-o", "out"], USAGE, ["SOURCE empty", "no PDF"]),
        ([*RUN[:2], "-q", "missing.yaml", "-o", "out"], USAGE, ["--questions missing.yaml"]),
        ([*RUN, "-o", "a-file"], OUTPUT, ["--out a-file", "is a file"]),
        ([*RUN, "-o", "a-file/sub"], OUTPUT, ["--out a-file/sub", "is a file"]),
        ([*RUN, "-o", "out", "--max-pages", "0"], USAGE, ["--max-pages"]),
        ([*RUN, "-o", "out", "--workers", "0"], USAGE, ["--workers"]),
        ([*RUN, "-o", "out", "--max-failure-rate", "1.5"], USAGE, ["--max-failure-rate"]),
        ([*RUN, "-o", "out", "--device", "gpu"], USAGE, ["--device 'gpu'"]),
        ([*RUN, "-o", "out", "--model", "no/such-model-dir"], USAGE, ["no/such-model-dir"]),
        ([*RUN, "-o", "out", "--bogus"], USAGE, ["--bogus"]),
        (["ask", "docs/one.pdf", "total?", "--model", "no/such-model-dir"], USAGE,
         ["no/such-model-dir"]),
        (["ask", "docs/nope.pdf", "total?"], USAGE, ["PDF docs/nope.pdf", "no such file"]),
        (["ask", "docs/one.pdf", "total?", "--page", "-1"], USAGE, ["--page"]),
        (["query", "--out", "nowhere", "SELECT 1"], USAGE, ["--out nowhere", "no such folder"]),
        (["query", "--out", "a-file", "SELECT 1"], USAGE, ["--out a-file", "is a file"]),
        (["show", "--out", "nowhere", "--doc", "d", "--question", "q"], USAGE,
         ["--out nowhere", "no such folder"]),
        (["watch", "not-a-url", "--once"], USAGE, ["URL not-a-url"]),
        (["demo", "--out", "a-file"], OUTPUT, ["--out a-file", "is a file"]),
        (["serve", "--prefect-yaml", "nope.yaml"], USAGE, ["--prefect-yaml nope.yaml"]),
        (["no-such-command"], USAGE, ["no-such-command"]),
    ],
)  # fmt: skip
def test_a_bad_path_or_value_is_one_line_and_its_exit_code(
    egr: Egr, work: Path, args: list[str], code: int, words: list[str]
) -> None:
    res = egr(*args)
    line = one_line(res)
    assert res.returncode == code, res.stderr
    for w in words:
        assert w in line, line
    assert not (work / "out").exists()  # nothing half-written, no out/_work


def test_an_unreachable_store_is_one_line_exit_4_for_every_command(egr: Egr, work: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    creds = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "x"}
    calls = [
        ["run", "s3://inbox/docs", "-q", "q.yaml", "-o", "out", "--endpoint-url", url],
        [*RUN, "-o", "s3://bucket/out", "--endpoint-url", url],
        ["query", "--out", "s3://bucket/out", "SELECT 1", "--endpoint-url", url],
        ["show", "--out", "s3://bucket/out", "--doc", "d", "--question", "q",
         "--endpoint-url", url],
        ["watch", "s3://bucket/in", "--once", "--endpoint-url", url],
    ]  # fmt: skip
    for args in calls:
        res = egr(*args, env=creds)
        line = one_line(res)
        assert res.returncode == STORAGE, (args, res.stderr)
        assert "s3://" in line and "unreachable" in line, line
    # The standard environment works the same as the flag.
    env = {**creds, "AWS_ENDPOINT_URL": url}
    res = egr("query", "--out", "s3://bucket/out", "SELECT 1", env=env)
    assert res.returncode == STORAGE and "unreachable" in one_line(res)
    assert not (work / "out").exists()


def test_no_credentials_is_a_storage_error_naming_the_url(egr: Egr, work: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    res = egr("query", "--out", "s3://bucket/out", "SELECT 1", "--endpoint-url", url)
    assert res.returncode == STORAGE and "no usable credentials" in one_line(res)
    res = egr("query", "--out", "s3://bucket/out", "SELECT 1", "--profile", "nobody")
    assert res.returncode == STORAGE and "nobody" in one_line(res)


def test_a_read_only_out_is_refused_before_anything_is_written(egr: Egr, work: Path) -> None:
    ro = work / "ro"
    ro.mkdir()
    # An immutable folder: read-only even for root (tests may run as root, which ignores modes).
    made = subprocess.run(["chattr", "+i", str(ro)], capture_output=True)
    if made.returncode != 0:
        ro.chmod(0o555)
        probe = ro / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a read-only folder here (root without chattr)")
    try:
        for out in ("ro", "ro/new/deeper"):
            res = egr(*RUN, "-o", out)
            line = one_line(res)
            assert res.returncode == OUTPUT, res.stderr
            assert f"--out {out}" in line and "cannot write" in line, line
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)
        ro.chmod(0o755)


def test_debug_shows_the_traceback(egr: Egr, work: Path) -> None:
    for args in (["--debug", "run", "/nonexistent/x", "-q", "q.yaml", "-o", "out"],
                 ["run", "/nonexistent/x", "-q", "q.yaml", "-o", "out", "--debug"]):  # fmt: skip
        res = egr(*args)
        assert res.returncode != 0
        assert "Traceback" in res.stderr or "Traceback" in res.stdout, res.stderr
        assert "no such file or folder" in res.stderr
    res = egr("run", "/nonexistent/x", "-q", "q.yaml", "-o", "out", env={"EGR_DEBUG": "1"})
    assert "Traceback" in res.stderr + res.stdout


def test_help_still_works_and_exits_0(egr: Egr, work: Path) -> None:
    res = egr("--help")
    assert res.returncode == 0 and "run" in res.stdout
    res = egr()
    assert res.returncode == 0 and "Usage" in res.stdout
    res = egr("run", "--help")
    assert res.returncode == 0 and "--endpoint-url" in res.stdout and "--profile" in res.stdout


def test_the_mechanism_other_commands_plug_into() -> None:
    """register() makes an exception expected: guard() prints its line with its exit code, and
    quiet_expected_errors() drops Prefect's traceback record of it; other errors stay loud."""
    import logging

    import typer

    from egr.errors import RunFailed, as_user_error, guard, quiet_expected_errors, register

    class Boom(Exception):
        pass

    class Bug(Exception):
        pass

    register(Boom, lambda e: RunFailed(f"boom: {e}"))

    @guard
    def cmd(exc: Exception) -> None:
        raise exc

    with pytest.raises(typer.Exit) as exited:
        cmd(Boom("x"))
    assert exited.value.exit_code == 1
    with pytest.raises(Bug):
        cmd(Bug("y"))
    assert as_user_error(Bug("y")) is None

    quiet_expected_errors(("egr-test-engine",))
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("egr-test-engine")
    logger.addHandler(handler)
    try:
        for exc in (Boom("expected"), Bug("a bug")):
            try:
                raise exc
            except Exception:
                logger.exception("Encountered exception during execution: %r", exc)
    finally:
        logger.removeHandler(handler)
    assert seen == ["Encountered exception during execution: Bug('a bug')"]
