"""The exceptions with a meaning for the user: bad input (one line, exit 2) and a config that does not apply."""


class UserError(Exception):
    """Bad input the user can fix: shown as one line naming the problem and the fix, no traceback."""


class NotApplicable(Exception):
    """This config cannot apply to this model (e.g. eager static on an imported ONNX graph); says why."""
