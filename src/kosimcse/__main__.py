"""``python -m kosimcse`` runs the CLI."""

from kosimcse.cli import main

main()
