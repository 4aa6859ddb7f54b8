"""``python -m egr``: the same entry point as the ``egr`` console script."""

from egr.cli import main

main()
