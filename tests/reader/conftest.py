"""The reader tests drive `egr train-reader` through the real entry point too (tests/egr_cli.py)."""

from egr_cli import egr  # noqa: F401 - the fixture
