"""The report's findings beyond the paper: the sensitivity-guided plan against inner, cut and the
global baselines at the same budget, and whether distillation helped fine-tuning.

Both are read from the main table (:func:`.tables.main_table`) at the final stage and phrased
like the other findings: a difference counts only beyond ``z`` combined standard deviations of
the two models' noise (*not resolved* otherwise), and a collapsed model never wins.
"""

from __future__ import annotations

import json

import pandas as pd

from .. import pipeline
from ..layout import Layout
from .verdicts import NOT_RESOLVED, SIGNIFICANCE_Z, METRICS, _finite, degradation, favours, flag

PLAN_COLUMNS = [
    "plan",
    "other",
    "other_strategy",
    "metric",
    "plan_value",
    "plan_std",
    "other_value",
    "other_std",
    "budget_metric",
    "plan_budget",
    "other_budget",
    "winner",
]
DISTILL_COLUMNS = [
    "distilled",
    "plain",
    "metric",
    "distilled_value",
    "distilled_std",
    "plain_value",
    "plain_std",
    "winner",
]


def _verdict(metric: str, a, b, name_a: str, name_b: str) -> str:
    """``favours`` on the two rows, except that a collapsed model never wins."""
    ca, cb = flag(a.get("collapsed")), flag(b.get("collapsed"))
    if ca and cb:
        return "none"
    if ca or cb:
        return name_b if ca else name_a
    return (
        favours(
            metric,
            float(a[metric]),
            float(b[metric]),
            name_a,
            name_b,
            a.get(f"{metric}_std"),
            b.get(f"{metric}_std"),
        )
        or "none"
    )


def plan_comparison(cfg: dict, main: pd.DataFrame) -> pd.DataFrame:
    """Each plan variant against the models built to the same budget, at the final stage: the
    variant it matches (``match``) and that variant's global baselines (a ``match`` plan has no
    baselines of its own: they would repeat these), or a target plan's own global baselines.  ``winner`` is the plan, the other model, ``not resolved`` or ``tie``."""
    metric = cfg["report"]["quality_metric"]
    stage = pipeline.final_stage(cfg)
    prim = pipeline.primary_variants(cfg)
    base = pipeline.baseline_variants(cfg)
    idx = main.set_index(["variant", "stage"])
    match = cfg["baselines"]["match"]
    rows = []
    for name, args in prim.items():
        if args["strategy"] != "plan" or args.get("distill"):
            continue
        others = []
        if args.get("match"):
            others.append(args["match"])
            others += [b for b, a in base.items() if a["reference"] == args["match"]]
        others += [b for b, a in base.items() if a["reference"] == name]
        p = idx.loc[(name, stage)]
        for o in others:
            q = idx.loc[(o, stage)]
            rows.append(
                {
                    "plan": name,
                    "other": o,
                    "other_strategy": q["strategy"],
                    "metric": metric,
                    "plan_value": float(p[metric]),
                    "plan_std": float(p.get(f"{metric}_std", float("nan"))),
                    "other_value": float(q[metric]),
                    "other_std": float(q.get(f"{metric}_std", float("nan"))),
                    "budget_metric": match,
                    "plan_budget": int(p[match]),
                    "other_budget": int(q[match]),
                    "winner": _verdict(metric, p, q, name, o),
                }
            )
    df = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    df.attrs.update(metric=metric, stage=stage)
    return df


def plan_costs(cfg: dict, lay: Layout) -> pd.DataFrame:
    """Each plan's budget: target, predicted and measured cost from its ``prune.json`` (for a
    latency plan the measured latency beside the prediction, with the table's device and threads)."""
    rows = []
    for name, args in pipeline.primary_variants(cfg).items():
        if args["strategy"] != "plan" or args.get("distill"):
            continue
        path = lay.prune_json(name)
        plan = (json.loads(path.read_text()).get("info") or {}).get("plan") or {}
        lat = plan.get("latency") or {}
        rows.append(
            {
                "plan": name,
                "budget": plan.get("metric"),
                "target": float(plan.get("target")),
                "predicted": float(plan.get("predicted")),
                "measured": float(lat.get("measured_ms", plan.get("achieved", plan.get("measured")))),
                "rel_error": plan.get("rel_error"),
                "device": lat.get("device", ""),
                "threads": lat.get("threads", ""),
                "ratios": ", ".join(f"{g} {r:g}" for g, r in (plan.get("ratios") or {}).items() if r),
                "filled": ", ".join(f"{g} {w}" for g, w in (plan.get("filled") or {}).items()),
            }
        )
    return pd.DataFrame(rows)


def distill_comparison(cfg: dict, main: pd.DataFrame) -> pd.DataFrame:
    """Each distilled variant against the same variant fine-tuned without distillation."""
    metric = cfg["report"]["quality_metric"]
    stage = pipeline.final_stage(cfg)
    idx = main.set_index(["variant", "stage"])
    rows = []
    for kd, plain in pipeline.distilled_pairs(cfg).items():
        p, q = idx.loc[(kd, stage)], idx.loc[(plain, stage)]
        rows.append(
            {
                "distilled": kd,
                "plain": plain,
                "metric": metric,
                "distilled_value": float(p[metric]),
                "distilled_std": float(p.get(f"{metric}_std", float("nan"))),
                "plain_value": float(q[metric]),
                "plain_std": float(q.get(f"{metric}_std", float("nan"))),
                "winner": _verdict(metric, p, q, kd, plain),
            }
        )
    df = pd.DataFrame(rows, columns=DISTILL_COLUMNS)
    df.attrs.update(metric=metric, stage=stage)
    return df


def _pm(std) -> str:
    return f" ± {float(std):.3g}" if _finite(std) else ""


def _outcome(winner: str, a: str, b: str, metric: str, va: float, vb: float) -> str:
    label = METRICS[metric][0]
    diff = abs(degradation(metric, va, vb))
    if winner == NOT_RESOLVED:
        return (
            f"not resolved at this noise level ({label} differs by {diff:.4g}, within {SIGNIFICANCE_Z:g} std)"
        )
    if winner == "tie":
        return "a tie"
    if winner == "none":
        return "no winner (both collapsed, or the metric was not recorded)"
    return f"**{winner}** is better by {diff:.4g} {label}"


def plan_findings(comp: pd.DataFrame) -> tuple[str, list[str]]:
    """(summary sentence, one sentence per pair) of :func:`plan_comparison`."""
    if comp.empty:
        return "", []
    metric = comp.attrs.get("metric", "fid")
    lines = []
    for _, r in comp.iterrows():
        lines.append(
            f"{r.plan} vs {r.other} ({r.other_strategy}; {r.budget_metric} {r.plan_budget:,} vs "
            f"{r.other_budget:,}): {METRICS[metric][0]} {r.plan_value:.4g}{_pm(r.plan_std)} vs "
            f"{r.other_value:.4g}{_pm(r.other_std)}: "
            + _outcome(r.winner, r.plan, r.other, metric, r.plan_value, r.other_value)
            + "."
        )
    wins = int((comp.winner == comp.plan).sum())
    losses = int((comp.winner == comp.other).sum())
    unres = int((comp.winner == NOT_RESOLVED).sum())
    n = len(comp)
    rest = n - wins - losses - unres
    if wins == n:
        head = f"The plan beats every model of its budget beyond the noise ({n} comparison(s))."
    elif losses == n:
        head = f"The plan loses to every model of its budget beyond the noise ({n} comparison(s))."
    elif unres == n:
        head = f"Whether the plan beats the models of its budget is not resolved at this noise level ({n} comparison(s))."
    else:
        head = (
            f"Of {n} comparison(s) at equal budget the plan wins {wins} and loses {losses} beyond the noise; "
            f"{unres} are not resolved at this noise level"
            + (f"; {rest} tie(s) or without a winner" if rest else "")
            + "."
        )
    return head, lines


def distill_findings(comp: pd.DataFrame) -> tuple[str, list[str]]:
    """(summary sentence, one sentence per pair) of :func:`distill_comparison`."""
    if comp.empty:
        return "", []
    metric = comp.attrs.get("metric", "fid")
    lines = []
    for _, r in comp.iterrows():
        lines.append(
            f"{r.distilled} vs {r.plain}: {METRICS[metric][0]} {r.distilled_value:.4g}{_pm(r.distilled_std)} vs "
            f"{r.plain_value:.4g}{_pm(r.plain_std)}: "
            + _outcome(r.winner, r.distilled, r.plain, metric, r.distilled_value, r.plain_value)
            + "."
        )
    helped = int((comp.winner == comp.distilled).sum())
    hurt = int((comp.winner == comp.plain).sum())
    unres = int((comp.winner == NOT_RESOLVED).sum())
    n = len(comp)
    if helped == n:
        head = f"Distillation helped beyond the noise in every pair ({n})."
    elif hurt == n:
        head = f"Distillation made fine-tuning worse beyond the noise in every pair ({n})."
    elif unres == n:
        head = f"Whether distillation helped is not resolved at this noise level ({n} pair(s))."
    else:
        head = (
            f"Distillation helped in {helped} and hurt in {hurt} of {n} pair(s) beyond the noise; "
            f"{unres} not resolved at this noise level."
        )
    return head, lines


def beyond_sections(cfg: dict, main: pd.DataFrame, lay: Layout) -> list[str]:
    """The report.md lines of both findings (nothing when no plan or distilled variant is configured)."""
    from .format import to_markdown

    parts: list[str] = []
    plan = plan_comparison(cfg, main)
    if not plan.empty or any(a["strategy"] == "plan" for a in pipeline.primary_variants(cfg).values()):
        head, lines = plan_findings(plan)
        costs = plan_costs(cfg, lay)
        parts += [
            "### Does the sensitivity-guided plan beat inner/cut/global pruning at the same budget?\n",
            "Plans pick one sweep ratio per swept layer, least summed degradation of the verdict metric "
            "within the budget (docs/plan.md).\n",
            (head + "\n") if head else "",
            *[f"* {x}" for x in lines],
            "",
            to_markdown(costs) if not costs.empty else "",
        ]
    kd = distill_comparison(cfg, main)
    if not kd.empty:
        head, lines = distill_findings(kd)
        parts += [
            "### Did distillation help fine-tuning?\n",
            f"Distilled variants (`-kd`): the frozen original teaches the pruned model "
            f"(weight {cfg['finetune']['distill']['weight']:g}, features "
            f"{', '.join(cfg['finetune']['distill']['features']) or 'output only'}).\n",
            head + "\n",
            *[f"* {x}" for x in lines],
            "",
        ]
    return parts


__all__ = [
    "beyond_sections",
    "distill_comparison",
    "distill_findings",
    "plan_comparison",
    "plan_costs",
    "plan_findings",
]
