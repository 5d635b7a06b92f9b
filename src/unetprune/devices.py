"""Device resolution: the one place that turns a config's ``device`` value into a torch device."""

from __future__ import annotations

import torch

from .errors import UserFacingError


class DeviceError(UserFacingError):
    """The configured device is not available on this machine (the message names the key)."""


def resolve_device(device: str | torch.device | None, key: str = "evaluate.device") -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; anything else as given.

    Asking for CUDA on a machine without it is an error naming the config ``key``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"config error at '{key}': {str(device)!r} requested but no CUDA device is "
            f"available; use 'auto' or 'cpu'"
        )
    return dev
