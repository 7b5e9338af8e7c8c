"""The `retrain` command line: commands, rendering, process settings and local servers."""
