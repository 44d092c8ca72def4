"""The `jobprov` command line."""
