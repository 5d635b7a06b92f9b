"""The paper's tables and figures and ``report.md`` for one experiment (``unetprune report``).

    from unetprune.report import build_report
    paths = build_report(cfg, base="results")   # {name: written path}

Reads only the files of ``results/<experiment>/`` (where each lives: :mod:`unetprune.layout`;
which models and stages exist: :mod:`unetprune.pipeline`) and the checkpoints for the sample
grids; writes the tables, figures, the DVC metrics and plots files and ``report.md``, each
where :class:`unetprune.layout.Layout` says.  The decisions the report restates are those of
docs/method.md#decisions-where-the-paper-is-silent.
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
