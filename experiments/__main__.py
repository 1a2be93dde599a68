"""``python -m experiments`` is the ``preuve`` command."""

from experiments.cli import main

main()
