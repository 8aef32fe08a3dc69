"""``python -m opsloop``: the same as the ``opsloop`` command."""

from opsloop.cli.main import main

main()
