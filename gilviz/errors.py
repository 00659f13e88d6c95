"""Errors a user can fix: printed as one line, exit status 2, never a traceback."""


class UserError(Exception):
    """Bad input or an environment problem; the message says what to do."""

    exit_status = 2
