"""Errors a user can fix. The CLI prints them as one line naming the file and the problem."""


class UserError(Exception):
    """Bad input (a file, a value, a missing download): printed as one line, no traceback."""
