"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input the user can fix: shown as one line naming the problem and the fix, no traceback."""
