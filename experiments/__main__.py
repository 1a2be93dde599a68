"""``python -m experiments`` is the ``preuve`` command."""

from experiments.cli.app import main

main()
