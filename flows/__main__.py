"""`python -m flows` runs the `retrain` command line."""

from flows.cli import main

main()
