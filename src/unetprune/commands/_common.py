"""Argument helpers shared by the command modules: the config arguments, argparse types for
numbers with the ranges of the config schema (batch sizes >= 1, learning rates finite and in
(0, 1)), and the media limits (:class:`unetprune.data.media.MediaLimits`) as flags."""

from __future__ import annotations

import argparse
import math

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


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (batch sizes, steps, counts, limits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def learning_rate(text: str) -> float:
    """argparse type: a learning rate, finite and in (0, 1) (as ``train.lr`` in the schema)."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a learning rate above 0 and below 1, got {text}")
    return value


def add_media_limit_args(p: argparse.ArgumentParser) -> None:
    """``--max-seconds``, ``--max-frames``, ``--max-pixels``: the limits per media input,
    checked before decoding (defaults: :class:`unetprune.data.media.MediaLimits`)."""
    from ..data.media import DEFAULT_LIMITS as d

    p.add_argument(
        "--max-seconds",
        type=positive_float,
        default=d.max_seconds,
        help=f"refuse a media input longer than this (default {d.max_seconds:g} s)",
    )
    p.add_argument(
        "--max-frames",
        type=positive_int,
        default=d.max_frames,
        help=f"refuse a video with more frames (default {d.max_frames})",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=d.max_pixels,
        help=f"refuse a frame or image with more pixels (default {d.max_pixels} = 3840 x 2160)",
    )


def media_limits(args: argparse.Namespace):
    """The :class:`unetprune.data.media.MediaLimits` of the flags of :func:`add_media_limit_args`."""
    from ..data.media import MediaLimits

    return MediaLimits(max_seconds=args.max_seconds, max_frames=args.max_frames, max_pixels=args.max_pixels)
