"""`unetprune report`: the paper's tables, figures and report.md of one experiment (thin adapter).

    unetprune report --config results/demo/config.yaml [--set report.quality_metric=psnr] [--results DIR]

Reads ``<results>/<experiment>/{eval,sensitivity,variants,baseline}`` and writes
``tables/*.csv|md``, ``figures/{sensitivity,tradeoff,samples}.png`` and ``report.md`` there.
"""

from __future__ import annotations

from ..layout import DEFAULT_BASE
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="tables, figures and report.md from an experiment's results",
        description=__doc__.split("\n\n")[0],
    )
    add_config_args(p)
    p.add_argument(
        "--results",
        default=str(DEFAULT_BASE),
        help=f"results folder holding <experiment>/ (default {DEFAULT_BASE})",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import build_report

    cfg = config_from_args(args)
    written = build_report(cfg, args.results)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
