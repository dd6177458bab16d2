"""``python -m seprobe.cli``: the command line (``python -m seprobe`` is the same, with its start-up guard)."""

from . import main

main()
