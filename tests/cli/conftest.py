"""CLI tests run the real entry point: the ``egr`` fixture (see tests/egr_cli.py)."""

from egr_cli import egr  # noqa: F401 - the fixture
