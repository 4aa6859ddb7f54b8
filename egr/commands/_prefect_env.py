"""Environment defaults for commands that start Prefect (set before ``prefect`` is imported)."""

from __future__ import annotations

import os


def prefect_defaults(verbose: bool = False) -> None:
    """Offline, quiet defaults; an explicit environment always wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The embedded server takes 10-40 s to start on a busy machine; Prefect's default is 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
