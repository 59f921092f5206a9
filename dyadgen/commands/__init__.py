"""Subcommands of the ``dyadgen`` CLI (see dyadgen/cli.py). Each imports heavy code only in run()."""
