"""`unetprune demo-data`: build the offline demo dataset of the config's model family (idempotent):
what :meth:`~unetprune.family.ModelFamily.build_demo` makes, e.g. aligned labels → photo pairs
or talking-face clips, under the config's data root."""

from __future__ import annotations

from pathlib import Path

from ..layout import Layout
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser("demo-data", help="build the offline demo dataset of the config's model family")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default: the config's data root)")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..family import family_for_config

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else Layout.from_config(cfg).data_root
    print(family_for_config(cfg).build_demo(cfg, out, force=args.force))
    return 0
