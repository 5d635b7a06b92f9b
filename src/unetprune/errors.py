"""Base class of errors whose message tells the user what to fix (printed without traceback)."""


class UserFacingError(RuntimeError):
    pass


class TrainingDiverged(UserFacingError):
    """A loss became NaN or inf; the last good checkpoint is left intact."""
