"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from ..config import load_config


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="config/config.yaml", help="experiment config (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.n_epochs=2 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> dict:
    return load_config(args.config, args.overrides)
