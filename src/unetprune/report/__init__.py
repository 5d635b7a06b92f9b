"""The paper's tables and figures and ``report.md`` for one experiment (``unetprune report``).

    from unetprune.report import build_report
    paths = build_report(cfg, base="results")   # {name: written path}

Reads only the files of ``results/<experiment>/`` (see :mod:`unetprune.pipeline`) and the
checkpoints for the sample grids; writes ``tables/*.csv|md``, ``figures/*.png`` and ``report.md``.
"""

from __future__ import annotations

from .markdown import assumptions, build_report, comparison_findings, sensitivity_findings
from .tables import (
    METRICS,
    ReportError,
    all_tables,
    comparison_table,
    eval_numbers,
    inner_layers,
    main_table,
    sensitivity_pivot,
    sensitivity_summary,
    sensitivity_table,
    write_tables,
)

__all__ = [
    "METRICS",
    "ReportError",
    "all_tables",
    "assumptions",
    "build_report",
    "comparison_findings",
    "comparison_table",
    "eval_numbers",
    "inner_layers",
    "main_table",
    "sensitivity_findings",
    "sensitivity_pivot",
    "sensitivity_summary",
    "sensitivity_table",
    "write_tables",
]
