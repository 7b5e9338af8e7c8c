"""`python -m cli` runs the `retrain` command line."""

from cli.entry import main

main()
