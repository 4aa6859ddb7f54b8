"""Read document bytes from a local path or any fsspec URL (s3:// through s3fs), and list PDFs.

Plain Python (no Prefect). A caller may pass a ready filesystem object (``fs``), e.g. an
``s3fs.S3FileSystem`` with credentials or an endpoint; otherwise fsspec infers it from the URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from egr_core.errors import TooLargeError, UnreadableSourceError

__all__ = ["is_url", "list_pdfs", "read_source", "source_name"]

_DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def is_url(source: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` strings (s3://, gs://, memory://, file://, ...)."""
    return isinstance(source, str) and "://" in source


def source_name(source: str | os.PathLike[str]) -> str:
    """The file name part of a path or URL (for labels and tables)."""
    return str(source).rstrip("/").rsplit("/", 1)[-1]


def _resolve(source: str | os.PathLike[str], fs: Any | None) -> tuple[Any, str]:
    """(filesystem, path inside it) for a path or URL."""
    if fs is not None:
        path = str(source)
        return fs, fs._strip_protocol(path) if is_url(path) else path
    if is_url(source):
        return fsspec.core.url_to_fs(str(source))
    return LocalFileSystem(), str(Path(source).expanduser().resolve())


def read_source(
    url_or_path: str | os.PathLike[str],
    fs: Any | None = None,
    *,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> bytes:
    """Read a whole document.

    Args:
        url_or_path: Local path, or an fsspec URL such as ``s3://bucket/key.pdf``.
        fs: Optional fsspec filesystem to read with (its protocol is stripped from the URL).
        max_bytes: Refuse larger objects; their size is checked before reading.

    Returns:
        The bytes.

    Raises:
        UnreadableSourceError: Missing object, permission or transport error (names the source).
        TooLargeError: The object is larger than ``max_bytes``.
    """
    label = str(url_or_path)
    try:
        fsys, path = _resolve(url_or_path, fs)
        size = fsys.size(path)
        if size is not None and size > max_bytes:
            raise TooLargeError(label, f"{size} bytes exceeds the limit of {max_bytes}")
        with fsys.open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise UnreadableSourceError(label, "not found") from exc
    except (OSError, ValueError) as exc:  # fsspec maps transport/permission errors to OSError
        raise UnreadableSourceError(label, f"cannot read: {exc}") from exc
    if len(data) > max_bytes:
        raise TooLargeError(label, f"more than {max_bytes} bytes")
    return bytes(data)


def list_pdfs(
    root: str | os.PathLike[str], fs: Any | None = None, *, recursive: bool = True
) -> list[str]:
    """All ``*.pdf`` files (any case) under a folder or object-store prefix, sorted.

    Returns local absolute paths for local roots and full URLs (``s3://bucket/key``) for URLs, so
    each result can be handed back to :func:`read_source`.

    Raises:
        UnreadableSourceError: The root does not exist or cannot be listed.
    """
    label = str(root)
    try:
        fsys, path = _resolve(root, fs)
        if fsys.isfile(path):
            found = [path]
        else:
            if not fsys.isdir(path):
                raise UnreadableSourceError(label, "no such folder or prefix")
            pattern = "**/*" if recursive else "*"
            found = [p for p in fsys.glob(f"{path.rstrip('/')}/{pattern}") if not fsys.isdir(p)]
    except (OSError, ValueError) as exc:
        raise UnreadableSourceError(label, f"cannot list: {exc}") from exc
    pdfs = sorted(p for p in found if p.lower().endswith(".pdf"))
    if is_url(root):
        return [fsys.unstrip_protocol(p) for p in pdfs]
    return pdfs
