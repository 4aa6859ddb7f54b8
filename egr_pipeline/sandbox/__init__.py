"""Render untrusted PDFs in a worker process with a memory limit and a wall-clock timeout.

A malformed or hostile PDF can make MuPDF allocate gigabytes (decompression bombs, huge images)
or loop for a long time. Each document is therefore opened in its own *spawned* process:

- ``RLIMIT_AS`` caps the worker's address space at its size after start-up plus ``memory_mb``,
  so an allocation bomb fails inside MuPDF (-> ``out_of_memory``) instead of taking the host down;
- the parent enforces ``timeout_s`` of wall-clock time and kills the worker (-> ``timeout``);
- a worker that dies by a signal or exits abnormally becomes ``crashed``.

Pages stream back one message each, so a worker that dies on page 7 still delivers pages 0-6.
Every outcome is a :class:`DocumentResult` with a status string (the ``status`` attribute of the
matching :mod:`egr_core.errors` class) and a message naming the file and page; nothing raises
unless the caller asks for it with :meth:`DocumentResult.raise_for_status`.

Spawn-safe: the worker entry point is a module-level function and only picklable dataclasses
cross the pipe. Scripts that call :func:`run_jobs` need the usual ``if __name__ == "__main__":``.

Layout: :mod:`.jobs` (the messages), :mod:`.worker` (the child), :mod:`.pool` (the parent).
"""

from egr_pipeline.sandbox.jobs import (
    OK,
    PARTIAL,
    DocumentResult,
    ImageFormat,
    PageResult,
    RenderJob,
)
from egr_pipeline.sandbox.pool import WorkerPool, run_job, run_jobs

__all__ = [
    "OK",
    "PARTIAL",
    "DocumentResult",
    "ImageFormat",
    "PageResult",
    "RenderJob",
    "WorkerPool",
    "run_job",
    "run_jobs",
]
