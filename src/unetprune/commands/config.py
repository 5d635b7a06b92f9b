"""`unetprune config`: validate an experiment config and show where its results go.

unetprune config check config/config.yaml [--experiment demo]
unetprune config show config/config.yaml        # the validated config, defaults filled in
"""

from __future__ import annotations

import sys

import yaml

from ..config import ConfigError, load_config


def register(sub) -> None:
    p = sub.add_parser("config", help="validate an experiment config, print the resolved config")
    q = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = q.add_parser("check", help="validate a config file (schema + semantic checks)")
    c.add_argument("config", help="experiment config (YAML)")
    c.add_argument(
        "--experiment",
        default=None,
        help="fail unless the config's `experiment` is this name (used by dvc.yaml)",
    )
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    c.set_defaults(func=run_check)
    s = q.add_parser("show", help="print the validated config with every default filled in")
    s.add_argument("config", help="experiment config (YAML)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=run_show)


def run_check(args) -> int:
    from .. import pipeline
    from ..layout import Layout

    cfg = load_config(args.config, args.overrides)
    if args.experiment is not None and cfg["experiment"] != args.experiment:
        raise ConfigError(
            f"config error at 'experiment': {args.config} names experiment "
            f"'{cfg['experiment']}', but it is registered as '{args.experiment}' "
            f"(config/dvc_experiments.yaml): make the two names equal"
        )
    n = len(pipeline.all_variants(cfg))
    print(
        f"{args.config}: valid; experiment '{cfg['experiment']}' -> {Layout.from_config(cfg).root} "
        f"({len(pipeline.sensitivity_layers(cfg))} sensitivity layers, {n} variants)"
    )
    return 0


def run_show(args) -> int:
    yaml.safe_dump(load_config(args.config, args.overrides), sys.stdout, sort_keys=False)
    return 0
