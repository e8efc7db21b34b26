"""The commands of the ``doopage-sheets`` command line, one module per area."""
