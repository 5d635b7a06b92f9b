"""The paper's tables and figures and ``report.md`` for one experiment (``unetprune report``).

    from unetprune.report import build_report
    paths = build_report(cfg, base="results")   # {name: written path}

Reads only the files of ``results/<experiment>/`` (where each lives: :mod:`unetprune.layout`;
which models and stages exist: :mod:`unetprune.pipeline`) and the checkpoints for the sample
grids; writes the tables, figures, the DVC metrics and plots files and ``report.md``, each
where :class:`unetprune.layout.Layout` says.  The decisions the report restates are those of
docs/method.md#decisions-where-the-paper-is-silent.

Modules, lowest first: :mod:`.verdicts` (metric directions, noise, collapse, the findings'
outcomes), :mod:`.load` (reading and checking the JSON inputs), :mod:`.format` (cells and
markdown), :mod:`.tables` (the tables and the files they are written to), :mod:`.comparability`
(published numbers), :mod:`.figures`, :mod:`.markdown` (``report.md``).  What a model family
adds to the text comes from its :meth:`~unetprune.family.ModelFamily.report_text`.
"""

from __future__ import annotations

from .format import fmt_noisy, metric_label, to_markdown, with_noise_markdown
from .load import (
    ReportError,
    check_one_backend,
    eval_noise,
    eval_numbers,
    load_all_evals,
    load_eval,
    noise_setup,
)
from .markdown import assumptions, build_report, comparison_findings, learning_summary, sensitivity_findings
from .tables import (
    HIDDEN_COLUMNS,
    MAIN_COLUMNS,
    SENSITIVITY_COLUMNS,
    all_tables,
    comparison_table,
    inner_layers,
    jsonable_table,
    learning_curve_table,
    main_metrics,
    main_table,
    markdown_view,
    sensitivity_pivot,
    sensitivity_summary,
    sensitivity_table,
    write_table,
    write_tables,
)
from .verdicts import (
    METRICS,
    NOISE_COLUMNS,
    NOT_RESOLVED,
    QUALITY_COLUMNS,
    SIGNIFICANCE_Z,
    beyond_noise,
    combined_std,
    degradation,
    favours,
    is_collapsed,
    pattern_finding,
)

__all__ = [
    "HIDDEN_COLUMNS",
    "MAIN_COLUMNS",
    "METRICS",
    "NOISE_COLUMNS",
    "NOT_RESOLVED",
    "QUALITY_COLUMNS",
    "SENSITIVITY_COLUMNS",
    "SIGNIFICANCE_Z",
    "ReportError",
    "all_tables",
    "assumptions",
    "beyond_noise",
    "build_report",
    "check_one_backend",
    "combined_std",
    "comparison_findings",
    "comparison_table",
    "degradation",
    "eval_noise",
    "eval_numbers",
    "favours",
    "fmt_noisy",
    "inner_layers",
    "is_collapsed",
    "jsonable_table",
    "learning_curve_table",
    "learning_summary",
    "load_all_evals",
    "load_eval",
    "main_metrics",
    "main_table",
    "markdown_view",
    "metric_label",
    "noise_setup",
    "pattern_finding",
    "sensitivity_findings",
    "sensitivity_pivot",
    "sensitivity_summary",
    "sensitivity_table",
    "to_markdown",
    "with_noise_markdown",
    "write_table",
    "write_tables",
]
