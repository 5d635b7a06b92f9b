"""`unetprune track`: mirror an experiment's results into MLflow (idempotent; thin adapter).

    unetprune track --config results/demo/config.yaml [--uri sqlite:///mlflow.db] [--results DIR]
    unetprune track --config results/demo/config.yaml --uri http://127.0.0.1:5000    # a tracking server

One MLflow experiment per project experiment; a run per model and stage (with its training
curves and its generator as a loadable pyfunc model, registered as a version of
``<experiment>-generator``), the sensitivity sweep as a parent run with a child per layer, a
report run with every table.  Re-running updates the same runs.  A local store keeps its
artifacts under an artifact root (``--artifact-root``; default ``mlartifacts/`` next to the
sqlite database), recorded as ``mlflow-artifacts:/<experiment>/...`` so the store can be moved.
Writes ``<results>/<experiment>/mlflow.json`` (the run ids).
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
    p.add_argument(
        "--uri",
        default=None,
        help="MLflow tracking URI: a local store (sqlite:///mlflow.db) or a tracking server "
        "(http://HOST:PORT); default: the config's tracking.uri",
    )
    p.add_argument(
        "--artifact-root",
        default=None,
        help="artifact folder of a local store (default: the config's tracking.artifact_root, else "
        "mlartifacts/ next to the sqlite database); runs record mlflow-artifacts:/<experiment>/... relative to it",
    )
    p.add_argument(
        "--artifact-location",
        default=None,
        help="artifact location of a newly created MLflow experiment, e.g. s3://bucket/prefix (default: "
        "mlflow-artifacts:/<experiment> for a local store, the server's default for a tracking server)",
    )
    p.add_argument(
        "--results",
        default=str(DEFAULT_BASE),
        help=f"results folder holding <experiment>/ (default {DEFAULT_BASE})",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from ..tracking import sync

    cfg = config_from_args(args)
    out = sync(
        cfg,
        args.results,
        uri=args.uri,
        artifact_location=args.artifact_location,
        artifact_root=args.artifact_root,
    )
    where = f", artifacts in {out['artifact_root']}" if out.get("artifact_root") else ""
    print(
        f"MLflow experiment '{out['experiment']}' ({out['tracking_uri']}{where}): {len(out['runs'])} runs, "
        f"{out['logged']} (re)logged, {out['unchanged']} unchanged; in `mlflow ui`, open "
        f"<server URL>/{out['ui_path']} (the runs, in the model-training view)"
    )
    return 0
