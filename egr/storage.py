"""Storage options and pre-flight checks of paths and object stores, shared by the commands.

One story for every command: ``--endpoint-url`` and ``--profile`` become fsspec storage options
(s3fs's ``endpoint_url`` and ``profile``); left out, s3fs/botocore read the standard environment
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``, ...) and fsspec its ``FSSPEC_S3_*``
configuration. The checks here run before Prefect starts and raise :mod:`egr.errors` types, so
a mistyped path or an unreachable endpoint is one line within a second or two.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from egr.errors import OutputError, StorageError, UsageError

#: Short timeouts and no retries for the pre-flight probes (the run itself keeps s3fs defaults).
PROBE_CONFIG = {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 1}}


def storage_options(endpoint_url: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """fsspec storage options of the CLI flags (empty: the environment decides)."""
    so: dict[str, Any] = {}
    if endpoint_url:
        so["endpoint_url"] = endpoint_url
    if profile:
        so["profile"] = profile
    return so


def storage_flags(so: dict[str, Any]) -> str:
    """The command-line flags that reproduce ``so`` (for "Next:" hints), leading space included."""
    parts = []
    if so.get("endpoint_url"):
        parts += ["--endpoint-url", shlex.quote(str(so["endpoint_url"]))]
    if so.get("profile"):
        parts += ["--profile", shlex.quote(str(so["profile"]))]
    return "".join(f" {p}" for p in parts)


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser()


def _probe_fs(url: str, so: dict[str, Any]) -> tuple[Any, str]:
    """A fresh filesystem for ``url`` with short timeouts (s3), and the path inside it."""
    import fsspec

    opts = dict(so)
    protocol = url.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        cfg = dict(opts.get("config_kwargs") or {})
        opts["config_kwargs"] = {**PROBE_CONFIG, **cfg}
        opts["skip_instance_cache"] = True
    try:
        return fsspec.core.url_to_fs(url, **opts)
    except (ImportError, ValueError, TypeError) as exc:
        raise UsageError(f"{url}: cannot open this URL: {exc}") from exc


def storage_failure(url: str, exc: BaseException) -> UsageError | StorageError:
    """The one-line error of a failed object-store call (endpoint, credentials, bucket)."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{url}: not found")
    if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
        return StorageError(f"{url}: no usable credentials ({text})")
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return StorageError(f"{url}: access denied ({text})")
    if "NoSuchBucket" in text or "does not exist" in text:
        return StorageError(f"{url}: no such bucket ({text})")
    return StorageError(f"{url}: storage unreachable ({name}: {text})")


def remote_exists(url: str, so: dict[str, Any], *, what: str) -> bool:
    """Whether ``url`` exists in its object store; raises when the store cannot be asked.

    Raises:
        StorageError: endpoint unreachable, credentials refused, no such bucket.
    """
    fs, path = _probe_fs(url, so)
    bucket = path.split("/", 1)[0]
    try:
        if hasattr(fs, "call_s3"):  # s3fs: ask the bucket itself, errors are not swallowed
            try:
                fs.call_s3("head_bucket", Bucket=bucket)
            except FileNotFoundError:
                raise StorageError(f"{what} {url}: no such bucket {bucket!r}") from None
        return bool(fs.exists(path))
    except (StorageError, UsageError):
        raise
    except Exception as exc:  # botocore/aiohttp errors share no base class besides Exception
        err = storage_failure(url, exc)
        raise type(err)(f"{what} {err.message}") from exc


def count_pdfs(source: str, so: dict[str, Any]) -> int:
    """How many PDFs ``source`` holds (a folder, one PDF, or a prefix), checked before a run.

    Raises:
        UsageError: the source names nothing or holds no PDF; StorageError: cannot be reached.
    """
    if is_remote(source):
        if not remote_exists(source, so, what="SOURCE"):
            raise UsageError(f"SOURCE {source}: not found (no such prefix or object)")
        fs, path = _probe_fs(source, so)
        try:
            found = [path] if fs.isfile(path) else fs.find(path)
        except Exception as exc:
            err = storage_failure(source, exc)
            raise type(err)(f"SOURCE {err.message}") from exc
    else:
        p = _local(source)
        if not p.exists():
            raise UsageError(f"SOURCE {source}: no such file or folder")
        if p.is_file():
            found = [str(p)]
        else:
            try:
                found = [str(f) for f in p.rglob("*") if f.is_file()]
            except PermissionError as exc:
                raise UsageError(f"SOURCE {source}: cannot list the folder ({exc})") from exc
        if p.is_dir() and not os.access(p, os.R_OK | os.X_OK):
            raise UsageError(f"SOURCE {source}: permission denied")
    pdfs = [f for f in found if f.lower().endswith(".pdf")]
    if not pdfs:
        raise UsageError(f"SOURCE {source}: no PDF files found")
    return len(pdfs)


def check_out_writable(out: str, so: dict[str, Any]) -> bool:
    """Check that ``--out`` can hold the tables, writing nothing. Returns whether it existed.

    Local: an existing folder, or a path whose nearest existing ancestor is a writable folder
    (probed with an unnamed temporary file, which also catches read-only mounts and immutable
    folders). Object store: the bucket answers (write access shows only at the first write).

    Raises:
        OutputError: a file, a read-only or forbidden folder; StorageError: store unreachable.
    """
    if is_remote(out):
        return remote_exists(out, so, what="--out")
    p = _local(out)
    if p.exists() and not p.is_dir():
        raise OutputError(f"--out {out}: is a file, not a folder")
    existed = p.exists()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {out}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = "" if probe == p else f" ({probe} is not writable)"
        raise OutputError(f"--out {out}: cannot write: {reason.lower()}{where}") from exc
    return existed


def check_readable_root(out: str, so: dict[str, Any]) -> None:
    """Check that an output root to read (query, show, review) exists and answers."""
    if is_remote(out):
        if not remote_exists(out, so, what="--out"):
            raise UsageError(f"--out {out}: not found (no egr tables under this prefix)")
        return
    p = _local(out)
    if not p.exists():
        raise UsageError(f"--out {out}: no such folder")
    if not p.is_dir():
        raise UsageError(f"--out {out}: is a file, not an output folder")
