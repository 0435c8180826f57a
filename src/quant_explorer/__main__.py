"""`python -m quant_explorer`: the CLI, for child processes started with this very interpreter."""

from .cli import main

main()
