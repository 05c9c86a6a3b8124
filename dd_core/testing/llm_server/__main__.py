"""``python -m dd_core.testing.llm_server``: serve until SIGTERM or SIGINT (see ``--help``)."""

from dd_core.testing.llm_server.cli import main

main()
