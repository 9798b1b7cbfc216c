"""``python -m agents.cli``: the ``warden`` command."""

from agents.cli.app import main

main()
