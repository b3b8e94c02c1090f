"""The bodies of the `a3c` subcommands and the command line's config (cli.py parses, dispatches)."""
