"""Base class of errors whose message tells the user what to fix (printed without traceback)."""


class UserFacingError(RuntimeError):
    pass


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range; the message names the key."""


class EvaluationError(UserFacingError):
    """Evaluation cannot run as configured; the message names the key or file."""


class TrainingDiverged(UserFacingError):
    """A loss became NaN or inf; the last good checkpoint is left intact."""
