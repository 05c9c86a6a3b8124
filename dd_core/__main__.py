"""``python -m dd_core`` is the ``dd`` command."""

from dd_core.interface.cli import main

main()
