"""`unetprune <command>`: argument parsing only; each command lives in
``unetprune.commands.<name>`` with ``register(subparsers)`` that sets ``func``.

Errors that a user can fix (bad config key, missing checkpoint, corrupt image, ...)
are raised as ``UserFacingError`` subclasses and printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Order = order in `unetprune --help`.
COMMAND_MODULES = ["config", "demo", "data", "train", "translate", "prune", "sweep", "evaluate", "report", "track"]


def user_errors() -> tuple[type[BaseException], ...]:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data.aligned import DataError
    from .errors import UserFacingError

    return (ConfigError, DataError, CheckpointError, UserFacingError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetprune", description="Structured pruning of U-Net GAN generators (Cut Inner Layers, arXiv "
        "2206.14658): data, training, pruning, sensitivity, evaluation, reports.")
    parser.add_argument("--version", action="version", version=f"unetprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"unetprune.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except user_errors() as e:
        print(f"unetprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetprune {args.command}: interrupted; rerun with the same command "
              f"(training resumes with --resume)", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
