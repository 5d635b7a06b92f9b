"""`unetprune track`: mirror an experiment's results into MLflow (idempotent; thin adapter).

    unetprune track --config results/demo/config.yaml [--uri sqlite:///mlflow.db] [--results DIR]

One MLflow experiment per project experiment; a run per model and stage, the sensitivity
sweep as a parent run with a child per layer, a report run with every table.  Re-running
updates the same runs.  Writes ``<results>/<experiment>/mlflow.json`` (the run ids).
"""

from __future__ import annotations

from ..layout import DEFAULT_BASE
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "track",
        help="sync an experiment's results into MLflow (idempotent)",
        description=__doc__.split("\n\n")[0],
    )
    add_config_args(p)
    p.add_argument("--uri", default=None, help="MLflow tracking URI (default: the config's tracking.uri)")
    p.add_argument(
        "--artifact-location",
        default=None,
        help="artifact root of a newly created MLflow experiment (default: mlartifacts/ next to a "
        "sqlite database)",
    )
    p.add_argument(
        "--results", default=str(DEFAULT_BASE), help=f"results folder holding <experiment>/ (default {DEFAULT_BASE})"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from ..tracking import sync

    cfg = config_from_args(args)
    out = sync(cfg, args.results, uri=args.uri, artifact_location=args.artifact_location)
    print(
        f"MLflow experiment '{out['experiment']}' ({out['tracking_uri']}): {len(out['runs'])} runs, "
        f"{out['logged']} (re)logged, {out['unchanged']} unchanged"
    )
    return 0
