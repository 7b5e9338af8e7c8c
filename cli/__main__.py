"""`python -m cli` runs the `retrain` command line."""

from cli.app import main

main()
