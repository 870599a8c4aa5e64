"""``python -m pipeline`` is the ``fraud`` command."""

from pipeline.cli import main

main()
