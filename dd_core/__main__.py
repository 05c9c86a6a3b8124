"""``python -m dd_core`` is the ``ddsynth`` command."""

from dd_core.interface.cli import main

main()
