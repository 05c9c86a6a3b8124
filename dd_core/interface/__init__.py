"""User-facing entry points: the Python API and the ``ddsynth`` CLI."""
