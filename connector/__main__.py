"""``python -m connector`` is the ``doopage-sheets`` command."""

from connector.cli import main

main()
