"""The one exception the user is shown as a line, not a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad argument, missing or corrupt data): reported as
    one line and exit code 2, never as a traceback."""
