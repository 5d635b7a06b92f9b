"""An experiment's ``report.md`` (:attr:`unetprune.layout.Layout.report_md`): what was run, the
tables, the figures, the findings (computed from the tables, never typed in) and every
assumption made where the paper is silent (docs/method.md#decisions-where-the-paper-is-silent)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import pipeline
from ..family import family_for_config, get_family
from ..fileio import atomic_write_text
from ..layout import DEFAULT_BASE, FINETUNED, ORIGINAL, PRUNED, Layout
from . import figures
from .beyond import beyond_sections
from .comparability import comparability_section
from .format import metric_label, to_markdown, with_noise_markdown
from .load import ReportError, _cmd_hint, load_eval, noise_setup
from .tables import (
    MAIN_COLUMNS,
    all_tables,
    inner_layers,
    learning_curve_table,
    markdown_view,
    write_table,
    write_tables,
)
from ..report_text import method_ref, report_text
from .verdicts import (
    AGAINST,
    EXTRA_METRICS,
    METRICS,
    NO_EFFECT,
    NOT_RESOLVED,
    QUALITY_COLUMNS,
    SIGNIFICANCE_Z,
    SUPPORT,
    _finite,
    collapse_threshold,
    flag,
    pattern_finding,
    position_table,
    power,
    sanity_gate,
    unresolved_parts,
)
from ..sanity import gate_metrics


def _f(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _signed(x, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.{digits}g}"


def _pm(std, digits: int = 2) -> str:
    """`` ± 0.012`` (nothing when the noise is unknown)."""
    return f" ± {std:.{digits}g}" if _finite(std) else ""


def _power_clause(what: str, value, std, n, exponent, z: float, unit: str = "images", sizes=None) -> str:
    """The power statement of one number within its noise: ``what value ± std is within 2σ = r
    (the smallest difference resolvable at this noise); about N images would resolve it (noise ∝
    n^-a, measured ...)``.  Nothing when the number is beyond its noise or the noise is unknown."""
    if not (_finite(std) and _finite(value)) or abs(float(value)) > z * float(std):
        return ""
    p = power(value, std, n, exponent, z)
    text = (
        f"{what} {_signed(float(value), 3)} ± {float(std):.2g} is within {z:g}σ = {p['resolvable']:.3g}, the "
        "smallest difference resolvable at this noise"
    )
    if float(value) == 0.0:
        return text + "; a zero difference is resolved by no number of " + unit
    if p["n_needed"] is None:
        return (
            text + f"; how many {unit} would resolve it is unknown (no measured scaling of the noise with n)"
        )
    law = f"noise ∝ n^-{float(exponent):.2f}, measured by resampling" + (
        f" {min(sizes)}–{max(sizes)} {unit}" if sizes else ""
    )
    return text + f"; about {p['n_needed']:,} {unit} (now {n}) would resolve it ({law})"


def _decided(parts: dict, z: float) -> str:
    """Which parts of a pattern test decided it: ``the difference is beyond 2σ; the outer layers'
    degradation is within 2σ``.  Only the parts that the direction of the point values tests are
    named: the outer layers' degradation when it is the larger, else the inner layers'."""
    parts = dict(parts)
    parts.pop("inner" if parts.pop("_outer_larger", True) else "outer", None)
    names = {
        "difference": "the difference",
        "outer": "the outer layers' degradation",
        "inner": "the inner layers' degradation",
    }
    beyond = [names[k] for k in ("difference", "outer", "inner") if parts.get(k) is True]
    within = [names[k] for k in ("difference", "outer", "inner") if parts.get(k) is False]
    out = []
    if beyond:
        out.append(f"{' and '.join(beyond)} {'is' if len(beyond) == 1 else 'are'} beyond {z:g}σ")
    if within:
        out.append(f"{' and '.join(within)} {'is' if len(within) == 1 else 'are'} within {z:g}σ")
    return "; ".join(out)


def _noise_clause(difference, std, z: float) -> str:
    """``beyond 2σ = 0.024`` / ``within 2σ = 0.024`` / ``noise level unknown``."""
    if not (_finite(std) and _finite(difference)):
        return "noise level unknown"
    where = "beyond" if abs(float(difference)) > z * float(std) else "within"
    return f"{where} {z:g}σ = {z * float(std):.3g}"


# ------------------------------------------------------------------------------------------
# findings
# ------------------------------------------------------------------------------------------


PAIRED = ("l1", "psnr", "ssim")


def _short(metric: str) -> str:
    """``PSNR`` for ``PSNR (dB)``: a metric's name in a sentence."""
    return (METRICS.get(metric) or EXTRA_METRICS[metric])[0].split(" (")[0]


def _names(metrics, verb: str | None = None) -> str:
    """``L1, PSNR and SSIM`` (+ `` agree`` / ``KID agrees``: the verb in number)."""
    labels = [_short(m) for m in metrics]
    text = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    if verb:
        text += f" {verb}s" if len(labels) == 1 else f" {verb}"
    return text


def _parse_by_metric(text) -> dict[str, str]:
    if not isinstance(text, str) or not text:
        return {}
    return dict(part.split(": ", 1) for part in text.split("; "))


_OUTCOME = {
    SUPPORT: "the inner layers are less sensitive",
    AGAINST: "the inner layers are not less sensitive",
    NO_EFFECT: (
        "pruning changed nothing for the worse (a negative degradation, i.e. an improvement, counts "
        "as no effect), which is no support for the pattern"
    ),
    NOT_RESOLVED: "the degradations or their difference are within {z:g} standard deviations of the noise",
}
#: how a per-ratio line names each outcome
_OUTCOME_LABEL = {NOT_RESOLVED: "not resolved at this noise level"}


def _outcome(finding: str, z: float) -> str:
    return _OUTCOME[finding].format(z=z)


def sensitivity_findings(summary: pd.DataFrame) -> tuple[str, list[str]]:
    """(verdict sentence, one sentence per ratio) on the inner-layers-are-prunable pattern.

    The verdict rests on the summary's metric (named, with its backend); a ratio supports the
    pattern only when the outer layers' degradation exceeds the inner layers' (negative
    degradations count as no effect) and, where the sweep recorded its noise, only when both
    that degradation and the difference exceed ``z`` standard deviations (otherwise the ratio
    is *not resolved at this noise level*); every other recorded metric's outcome is compared
    and the finding states where they disagree."""
    metric = summary.attrs.get("metric", "fid")
    z = float(summary.attrs.get("z", SIGNIFICANCE_Z))
    label = METRICS[metric][0]
    named = metric_label(metric, summary.attrs.get("fid_backend"))
    lines, findings, disagreements, unknown = [], {}, {}, []
    for _, r in summary.iterrows():
        if not r.n_inner or not r.n_outer:
            lines.append(
                f"At ratio {r.ratio:g} the sweep has no {'inner' if not r.n_inner else 'outer'} layer, so "
                "inner and outer layers cannot be compared."
            )
            continue
        finding = (
            r.get("finding")
            if isinstance(r.get("finding"), str)
            else pattern_finding(r.mean_degradation_inner, r.mean_degradation_outer)
        )
        if finding is None:
            lines.append(f"At ratio {r.ratio:g} the sweep recorded no {label}, so this ratio is not judged.")
            continue
        findings[r.ratio] = finding
        known = bool(r.get("noise_known")) if r.get("noise_known") is not None else False
        if not known:
            unknown.append(r.ratio)
        by_metric = _parse_by_metric(r.get("findings_by_metric"))
        resolved = {m: f for m, f in by_metric.items() if f != NOT_RESOLVED}
        within = [m for m, f in by_metric.items() if f == NOT_RESOLVED]
        dis = {m: f for m, f in resolved.items() if f != finding} if finding != NOT_RESOLVED else {}
        if dis:
            disagreements[r.ratio] = dis
            agree = [m for m in resolved if m not in dis]
            others = (
                f" {_names(dis, 'disagree')} ("
                + "; ".join(f"{_short(m)}: {f}" for m, f in dis.items())
                + ")"
                + (f"; {_names(agree, 'agree')}" if agree else "")
                + "."
            )
        elif resolved and finding != NOT_RESOLVED:
            others = f" {_names(resolved, 'agree')}."
        elif resolved:
            others = " Other metrics: " + "; ".join(f"{_short(m)}: {f}" for m, f in resolved.items()) + "."
        else:
            others = ""
        if within:
            others += f" Within the noise on {_names(within)}."
        std_i, std_o, std_d = (r.get("std_inner"), r.get("std_outer"), r.get("std_difference"))
        noise = f", {_noise_clause(r.difference, std_d, z)}" if known else ", noise level unknown"
        lines.append(
            f"At ratio {r.ratio:g}, pruning one inner layer ({r.inner_layers}) degrades {label} by "
            f"{_signed(r.mean_degradation_inner)} on average ({_pm(std_i)[1:] + ', ' if known else ''}"
            f"{_signed(r.mean_degradation_pct_inner, 3)}%), "
            f"one outer layer by {_signed(r.mean_degradation_outer)} "
            f"({_pm(std_o)[1:] + ', ' if known else ''}{_signed(r.mean_degradation_pct_outer, 3)}%): "
            f"{_OUTCOME_LABEL.get(finding, finding)} — {_outcome(finding, z)} (difference outer − inner "
            f"{_signed(r.difference)}"
            f"{_pm(std_d) if known else ''}{noise}).{others}"
            + _sensitivity_power(r, finding, known, summary.attrs, z)
        )
    n = len(findings)
    support = [x for x, f in findings.items() if f == SUPPORT]
    none = [x for x, f in findings.items() if f == NO_EFFECT]
    unres = [x for x, f in findings.items() if f == NOT_RESOLVED]
    k = len(support)
    ratios = lambda xs: ", ".join(f"{x:g}" for x in xs)  # noqa: E731
    if n == 0:
        verdict = "The sweep cannot show or refute the paper's pattern: it lacks inner or outer layers."
    elif len(unres) == n:
        verdict = (
            f"**Not resolved at this noise level**: on {named}, the sensitivity curve neither shows nor refutes "
            f"the paper's inner-layers-are-prunable pattern: at every swept ratio ({n}) the difference between "
            f"inner and outer layers is within {z:g} standard deviations of the noise."
        )
    elif k == n:
        verdict = (
            f"**Yes**: on {named}, the sensitivity curve shows the paper's inner-layers-are-prunable pattern "
            f"at every swept ratio ({k} of {n}): pruning an inner layer costs less {label} than pruning an "
            "outer one."
        )
    elif k == 0:
        verdict = (
            f"**No**: on {named}, the sensitivity curve does not show the paper's inner-layers-are-prunable "
            f"pattern at any swept ratio (0 of {n}): on this data the inner layers are at least as sensitive "
            "as the outer ones, or pruning either has no effect."
        )
    else:
        verdict = (
            f"**Partly**: on {named}, the sensitivity curve shows the paper's inner-layers-are-prunable "
            f"pattern at {k} of {n} swept ratios ({ratios(support)})."
        )
    if n and none:
        verdict += (
            f" At ratio(s) {ratios(none)} pruning did not worsen {label} in either the inner or the "
            "outer layers (negative degradations count as no effect), which is not support."
        )
    if unres and len(unres) < n:
        verdict += (
            f" At ratio(s) {ratios(unres)} the difference is not resolved at this noise level (within "
            f"{z:g} standard deviations)."
        )
    if n:
        dis_metrics = list(dict.fromkeys(m for d in disagreements.values() for m in d))
        paired_dis = [m for m in PAIRED if m in dis_metrics]
        if dis_metrics:
            verdict += (
                f" Other metrics disagree with {label}: "
                + "; ".join(
                    f"{_short(m)} at ratio(s) {ratios(x for x, d in disagreements.items() if m in d)}"
                    for m in dis_metrics
                )
                + "."
                + (
                    f" (L1/PSNR/SSIM are paired metrics that can reward a mean prediction; the verdict "
                    f"rests on {label}.)"
                    if paired_dis and metric not in PAIRED
                    else ""
                )
            )
        elif any(_parse_by_metric(r.get("findings_by_metric")) for _, r in summary.iterrows()):
            within_any = unres or any(
                NOT_RESOLVED in _parse_by_metric(r.get("findings_by_metric")).values()
                for _, r in summary.iterrows()
            )
            verdict += (
                f" No other recorded metric disagrees with {label} beyond its noise."
                if within_any
                else f" The other recorded metrics agree with {label} at every judged ratio."
            )
        if len(unknown) == n:
            verdict += (
                " The noise level is unknown (the sweep recorded no repeated generation or bootstrap), so "
                "these differences are not tested against it."
            )
        elif unknown:
            verdict += f" The noise level is unknown at ratio(s) {ratios(unknown)}."
        else:
            verdict += (
                f" A difference counts only beyond {z:g} standard deviations of its noise "
                "(σ = sqrt(σ_a² + σ_b²))."
            )
    return verdict, lines


def _sensitivity_power(r, finding: str, known: bool, attrs: dict, z: float) -> str:
    """`` Decided by: ...; <power statements>.`` for a ratio that is not resolved (nothing else)."""
    if finding != NOT_RESOLVED or not known:
        return ""
    inner, outer = float(r.mean_degradation_inner), float(r.mean_degradation_outer)
    std_i, std_o, std_d = r.get("std_inner"), r.get("std_outer"), r.get("std_difference")
    parts = {**unresolved_parts(inner, outer, std_i, std_o, std_d, z), "_outer_larger": outer >= inner}
    n, a, sizes = attrs.get("n_images"), attrs.get("scaling_exponent"), attrs.get("scaling_sizes")
    clauses = [
        _power_clause("the difference outer − inner", outer - inner, std_d, n, a, z, sizes=sizes),
        _power_clause("the outer layers' degradation", outer, std_o, n, a, z, sizes=sizes)
        if outer > 0 and parts["outer"] is False
        else "",
    ]
    clauses = [c for c in clauses if c]
    text = f" Decided by: {_decided(parts, z)}."
    if clauses:
        text += " Power: " + "; ".join(clauses) + "."
    return text


def position_findings(pos: pd.DataFrame, attrs: dict | None = None) -> tuple[str, list[str]]:
    """(summary sentence, one sentence per ratio) of the per-layer-position test: every outer
    layer's degradation against the inner layers' mean (:func:`~.verdicts.position_table`), with
    the part that decided each outcome and, for every unresolved one, its power statement."""
    if pos.empty:
        return "", []
    attrs = {**pos.attrs, **(attrs or {})}
    z = float(attrs.get("z", SIGNIFICANCE_Z))
    metric = attrs.get("metric", "fid")
    label = METRICS[metric][0]
    n, a, sizes = attrs.get("n_images"), attrs.get("scaling_exponent"), attrs.get("scaling_sizes")
    lines, support, against = [], [], []
    for r, g in pos.groupby("ratio", sort=True):
        cells = []
        for _, p in g.sort_values("position").iterrows():
            f = p.finding
            if f == SUPPORT:
                support.append((r, p.layer))
            elif f == AGAINST:
                against.append((r, p.layer))
            known = _finite(p.std_difference)
            cell = (
                f"{p.layer} {_signed(p.degradation, 3)}{_pm(p['std'])}: {_OUTCOME_LABEL.get(f, f)} "
                f"(difference {_signed(p.difference, 3)}{_pm(p.std_difference)}, "
                f"{_noise_clause(p.difference, p.std_difference, z) if known else 'noise level unknown'}"
            )
            if f == NOT_RESOLVED:
                parts = {
                    **unresolved_parts(
                        p.inner_mean, p.degradation, p.std_inner, p["std"], p.std_difference, z
                    ),
                    "_outer_larger": p.degradation >= p.inner_mean,
                }
                cell += f"; {_decided(parts, z)}"
                pw = _power_clause("the difference", p.difference, p.std_difference, n, a, z, sizes=sizes)
                if pw:
                    cell += f"; {pw}"
            if f == NO_EFFECT:  # neither this layer nor the inner ones worsened the score
                cells.append(f"{p.layer} {_signed(p.degradation, 3)}{_pm(p['std'])}: {f}")
            else:
                cells.append(cell + ")")
        g0 = g.iloc[0]
        lines.append(
            f"At ratio {r:g}, against the inner layers' mean degradation {_signed(g0.inner_mean, 3)}"
            f"{_pm(g0.std_inner)}: " + "; ".join(cells) + "."
        )
    pairs = lambda xs: ", ".join(f"{layer} at {r:g}" for r, layer in xs)  # noqa: E731
    if support and not against:
        head = "**Yes, per layer position**"
    elif against and not support:
        head = "**No, per layer position**"
    elif support and against:
        head = "**Mixed, per layer position**"
    else:
        head = "**Not resolved per layer position**"
    sentence = f"{head}: each outer layer tested alone against the inner layers' mean ({label}): "
    if support:
        sentence += f"more sensitive than the inner layers beyond the noise: {pairs(support)}"
    if against:
        sentence += (
            "; " if support else ""
        ) + f"less sensitive than the inner layers beyond the noise: {pairs(against)}"
    if not (support or against):
        sentence += "no outer layer position differs from the inner layers beyond the noise"
    n_unres = int((pos.finding == NOT_RESOLVED).sum())
    sentence += f" ({n_unres} of {len(pos)} position tests not resolved)."
    return sentence, lines


def sanity_findings(gate: dict | None, original_eval: dict, z: float = SIGNIFICANCE_Z) -> str:
    """The report's first finding: whether the original beats the trivial generators of its task
    beyond the noise (:func:`~.verdicts.sanity_gate`), each check with its numbers and, where the
    original is better but within the noise, its power statement."""
    if gate is None:
        return (
            "The original's evaluation scored no trivial generator (`unetprune evaluate --sanity`), so "
            "whether it does its task better than copying its input is not checked."
        )
    gens = ((original_eval.get("sanity") or {}).get("generators")) or {}
    desc = "; ".join(f"{n}: {g.get('description', '')}" for n, g in gens.items())
    parts = []
    for c in gate["checks"]:
        std = c.get("std")
        better_word = "better" if c["advantage"] > 0 else "worse"
        pa = power_attrs(original_eval, c["metric"], original_eval.get("n_images"))
        pw = (
            _power_clause(
                "the difference",
                c["advantage"],
                std,
                pa["n_images"],
                pa["scaling_exponent"],
                z,
                sizes=pa["scaling_sizes"],
            )
            if c["advantage"] > 0
            else ""
        )
        parts.append(
            f"{_short(c['metric'])} {_f(c['original'])} vs {c['trivial']} {_f(c['trivial_value'])}: the original "
            f"is {better_word} by {abs(c['advantage']):.3g}"
            + (f" ({_noise_clause(c['advantage'], std, z)})" if _finite(std) else " (noise level unknown)")
            + (f" — {pw}" if pw else "")
        )
    checks = "; ".join(parts)
    by_why: dict[tuple[str, str], list[str]] = {}
    for c in gate.get("not_compared") or []:
        by_why.setdefault((c["trivial"], c["why"]), []).append(_short(c["metric"]))
    if by_why:
        checks += ". " + "; ".join(
            f"{t} is not compared on {' or '.join(ms)}: {why}" for (t, why), ms in by_why.items()
        )
    names = _names(gate["metrics"]) if gate["metrics"] else "no metric"
    if gate["passed"] is None:
        return f"**Sanity gate not checked**: no checked metric ({names}) was recorded for the trivial generators ({desc})."
    if gate["passed"]:
        return (
            f"**Sanity gate passed**: the original beats every trivial generator of its task beyond the noise on "
            f"{names} ({desc}). {checks}."
        )
    return (
        "**Sanity gate failed — the original does not do its task**: it does not beat "
        + ", ".join(f"{c['trivial']} on {_short(c['metric'])}" for c in gate["checks"] if not c["beats"])
        + f" beyond {z:g} standard deviations of the noise ({desc}). {checks}. "
        "**Every pruning finding below rests on a generator that does not do its task.**"
    )


#: the mark every pruning finding carries when the original fails the sanity gate
SANITY_MARK = "*(Rests on an original that fails the sanity gate: see above.)* "


def _collapse_note(model: str, value, threshold) -> str:
    div = "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.3g}"
    return f"{model} is **collapsed** (output diversity {div} < {threshold:g} of the real images')"


def comparison_findings(comp: pd.DataFrame, diversity: dict | None = None) -> tuple[str, list[str]]:
    """(summary sentence, one sentence per variant-vs-baseline pair).

    The verdict rests on the comparison's metric (named, with its backend); a difference within
    ``z`` combined standard deviations of the two models' noise is *not resolved at this noise
    level* (where the noise was recorded); a collapsed model never wins; every line states which
    other metrics disagree.  ``diversity`` (model → ratio) lets the sentences quote the collapse
    check's value."""
    if comp.empty:
        return "No global baselines were configured, so there is nothing to compare.", []
    metric, stage = comp.attrs.get("metric", "fid"), comp.attrs.get("stage", "")
    z = float(comp.attrs.get("z", SIGNIFICANCE_Z))
    label = METRICS[metric][0]
    named = metric_label(metric, comp.attrs.get("fid_backend"))
    threshold = float(comp.attrs.get("collapse_threshold", 0.1))
    diversity = diversity or {}
    stage_txt = "after fine-tuning" if stage == pipeline.FINETUNED else "without fine-tuning"
    lines = []
    known_any = False
    for _, r in comp.iterrows():
        metric_winner = r.get("metric_winner", r.winner)
        decided_by = r.get("decided_by", metric)
        vc, bc = flag(r.get("variant_collapsed")), flag(r.get("baseline_collapsed"))
        collapsed = [m for m, c in ((r.variant, vc), (r.baseline, bc)) if c]
        std_d = r.get("difference_std")
        known = _finite(std_d)
        known_any = known_any or known
        noise = _noise_clause(r.advantage, std_d, z)
        if r.winner == "none":
            res = "**no winner**: both models are collapsed"
        elif r.winner == "tie":
            res = "a tie"
        elif r.winner == NOT_RESOLVED:
            res = (
                f"**not resolved at this noise level**: {label} favours {metric_winner} by "
                f"{abs(r.advantage):.4g} ({abs(r.advantage_pct):.3g}%), {noise}"
            )
        else:
            res = f"**{r.winner} wins**"
            if decided_by == "collapse":
                res += f" by the collapse check ({label} favours {metric_winner} by {abs(r.advantage):.4g}, {noise})"
            else:
                res += f" by {abs(r.advantage):.4g} ({abs(r.advantage_pct):.3g}%; {noise})"
        notes = "".join(f"; {_collapse_note(m, diversity.get(m), threshold)}" for m in collapsed)
        dis = [m for m in str(r.get("disagree") or "").split(", ") if m]
        agr = [m for m in str(r.get("agree") or "").split(", ") if m]
        within = [m for m in str(r.get("unresolved") or "").split(", ") if m]
        if dis:
            other = next(x for x in (r.variant, r.baseline) if x != metric_winner)
            others = (
                f" {_names(dis, 'disagree')} with {label} (favouring {other})"
                + (f"; {_names(agr, 'agree')}" if agr else "")
                + "."
            )
        elif agr:
            others = f" {_names(agr, 'agree')}."
        else:
            others = ""
        if within:
            others += f" Within the noise on {_names(within)}."
        lines.append(
            f"{r.variant} vs {r.baseline} ({stage_txt}): {label} {_f(r.variant_value)}"
            f"{_pm(r.get('variant_std')) if known else ''} vs {_f(r.baseline_value)}"
            f"{_pm(r.get('baseline_std')) if known else ''} ({r.better} is better): {res}{notes}; budgets "
            f"({r.budget_metric}) {r.variant_budget:,} vs {r.baseline_budget:,} (baseline "
            f"{100 * r.budget_gap:+.2f}%).{others}" + _comparison_power(r, comp.attrs, z)
        )
    wins = int((comp.winner == comp.variant).sum())
    unres = int((comp.winner == NOT_RESOLVED).sum())
    n = len(comp)
    prim = comp.variant.unique()
    per = "; ".join(
        f"{v}: {int(((comp.variant == v) & (comp.winner == v)).sum())} of {int((comp.variant == v).sum())}"
        for v in prim
    )
    worst_gap = float(comp.budget_gap.abs().max())
    answer = (
        "**Yes**"
        if wins == n
        else "**Not resolved at this noise level**"
        if unres == n
        else "**No**"
        if wins == 0
        else "**Partly**"
    )
    verdict = (
        f"{answer}: the inner/cut variants "
        f"beat their matched global baselines in {wins} of {n} comparisons on {named} {stage_txt} ({per}); "
        f"the matched budgets differ by at most {100 * worst_gap:.2f}% ({comp.budget_metric.iloc[0]})."
    )
    if unres:
        verdict += (
            f" {unres} of {n} comparison(s) are not resolved at this noise level (the {label} difference "
            f"is within {z:g} combined standard deviations)."
        )
    if "decided_by" in comp.columns:
        by_collapse = comp[comp.decided_by == "collapse"]
        flagged = sorted(
            {
                m
                for _, r in comp.iterrows()
                for m, c in (
                    (r.variant, r.get("variant_collapsed")),
                    (r.baseline, r.get("baseline_collapsed")),
                )
                if flag(c)
            }
        )
        if flagged:
            verdict += (
                f" Collapsed (output diversity below {threshold:g} of the real images', so never a "
                f"winner): {', '.join(flagged)}; {len(by_collapse)} comparison(s) decided by the "
                "collapse check."
            )
    if "disagree" in comp.columns:
        dis_metrics = [m for m in QUALITY_COLUMNS if any(m in str(d).split(", ") for d in comp.disagree)]
        if dis_metrics:
            verdict += (
                f" Other metrics disagree with {label}: "
                + "; ".join(
                    f"{_short(m)} in {sum(m in str(d).split(', ') for d in comp.disagree)} of {n}"
                    for m in dis_metrics
                )
                + " comparison(s)."
                + (
                    " (L1/PSNR/SSIM are paired metrics that reward a mean prediction; the verdict rests on "
                    f"{label}.)"
                    if any(m in PAIRED for m in dis_metrics) and metric not in PAIRED
                    else ""
                )
            )
        elif "unresolved" in comp.columns and ((comp.unresolved != "").any() or unres):
            verdict += f" No other recorded metric disagrees with {label} beyond its noise."
        else:
            verdict += f" The other recorded metrics agree with {label} in every comparison."
    if known_any:
        verdict += (
            f" A difference counts only beyond {z:g} combined standard deviations of the two models' "
            "noise (σ = sqrt(σ_variant² + σ_baseline²))."
        )
    else:
        verdict += (
            " The noise level is unknown (the evaluations recorded no repeated generation or bootstrap), "
            "so these differences are not tested against it."
        )
    return verdict, lines


def _comparison_power(r, attrs: dict, z: float) -> str:
    """`` Power: ...`` for a comparison that is not resolved at this noise level (nothing else)."""
    if r.winner != NOT_RESOLVED:
        return ""
    clause = _power_clause(
        "the difference",
        r.advantage,
        r.get("difference_std"),
        attrs.get("n_images"),
        attrs.get("scaling_exponent"),
        z,
        sizes=attrs.get("scaling_sizes"),
    )
    return f" Power: {clause}." if clause else ""


def noise_text(original_eval: dict, z: float = SIGNIFICANCE_Z) -> str:
    """How the noise of the numbers was measured (from the evaluation's noise block), in words."""
    setup = noise_setup(original_eval)
    if setup is None:
        return (
            "the noise level is unknown (the evaluation recorded no repeated generation or bootstrap), so "
            "the verdicts rest on the point values"
        )
    parts = []
    if setup["seeds"] > 1:
        parts.append(f"generation repeated over {setup['seeds']} dropout/BatchNorm seeds")
    if setup["bootstrap"] > 0:
        parts.append(f"{setup['bootstrap']} bootstrap resamples of the images")
    both = "; std = sqrt(std_seed² + std_boot²)" if len(parts) == 2 else ""
    return (
        f"every number carries its noise ({' and '.join(parts)}{both}), and a "
        f"difference counts only beyond {z:g} standard deviations of it (σ = sqrt(σ_a² + σ_b²)); smaller ones "
        "are reported as not resolved at this noise level"
    )


def caveat(original_eval: dict, metric: str = "fid") -> str:
    """How much the findings can be trusted, from the evaluation's own record."""
    fid = original_eval.get("fid") or {}
    n, split, backend = original_eval.get("n_images"), original_eval.get("split"), fid.get("backend")
    rel = " (a stand-in network: relative values only)" if backend == "standin" else ""
    on = (
        f"{_short(metric)}, computed with the `{backend}` backend{rel},"
        if metric in ("fid", "kid")
        else f"{_short(metric)} (the tables' FID: `{backend}` backend{rel}),"
    )
    return (
        f"*These findings rest on {on} over {n} images of the `{split}` split; {noise_text(original_eval)}; the "
        "other metrics are reported beside it and the findings say where they disagree.*"
    )


def learning_summary(
    train_log: dict | None, window_fraction: float = 0.25, plateau_fraction: float = 0.1
) -> str:
    """One paragraph on the original's training: the learning curve's start, end and last stretch,
    and how far the weights moved from their initialisation.

    Plateau test on window means, not on single checks (one check is as noisy as the GAN's
    training and its dropout/BN sampling, so two single epochs can show a spurious gain or
    none): with W = the last ``window_fraction`` of the epochs (at least 2), the mean check of
    the last W epochs is compared with the mean of the W epochs before them; a plateau when that
    gain is under ``plateau_fraction`` of the total improvement (the check before training minus
    the last window's mean)."""
    if not train_log:
        return "The original's `train.json` was not found, so there is no learning curve."
    if train_log.get("imported"):
        family = get_family(((train_log.get("config") or {}).get("model") or {}).get("family")).name
        return (
            f"The original was imported from released weights (`model.{family}.init_weights`), not trained "
            "here, so there is no learning curve."
        )
    curve = learning_curve_table(train_log)
    ev = train_log.get("eval") or {}
    score = report_text(
        get_family(((train_log.get("config") or {}).get("model") or {}).get("family"))
    ).check_score()
    what = (
        f"the trainer's check ({score} on {ev.get('n_images')} `{ev.get('split')}` "
        f"images, mode `{ev.get('mode')}`; lower is better)"
    )
    checks = curve.dropna(subset=["check"]) if "check" in curve.columns else curve.iloc[0:0]
    if len(checks) < 2:
        if "l1_init" in ev and "l1_final" in ev:
            text = (
                f"Learning check, {what}: {ev['l1_init']:.4g} before training → {ev['l1_final']:.4g} after "
                f"{len(train_log.get('epochs') or [])} epochs (this `train.json` has no per-epoch curve)."
            )
        else:
            text = (
                "This `train.json` records no learning check (`train.eval_split` / `train.eval_images` off)."
            )
    else:
        first, last = checks.iloc[0], checks.iloc[-1]
        e_last = int(last.epoch)
        window = max(2, math.ceil(window_fraction * e_last))
        tail = checks[checks.epoch > e_last - window]
        prev = checks[
            (checks.epoch > e_last - 2 * window) & (checks.epoch <= e_last - window) & (checks.epoch > 0)
        ]
        best = checks.loc[checks.check.idxmin()]
        text = (
            f"Learning curve, {what}: {first.check:.4g} before training → {last.check:.4g} after {e_last} "
            f"epochs (best {best.check:.4g} at epoch {int(best.epoch)})."
        )
        m_tail = float(tail.check.mean())
        total = float(first.check - m_tail)
        if len(prev) and total > 0:
            m_prev = float(prev.check.mean())
            gain = m_prev - m_tail
            frac = gain / total

            def span(w) -> str:
                return (
                    f"epoch {int(w.epoch.iloc[0])}"
                    if len(w) == 1
                    else f"epochs {int(w.epoch.iloc[0])}–{int(w.epoch.iloc[-1])}"
                )

            text += (
                f" Mean check over {span(prev)}: {m_prev:.4g}; over {span(tail)}: {m_tail:.4g} "
                f"({'an improvement' if gain >= 0 else 'a worsening'} of {abs(gain):.4g}); "
            )
            text += (
                f"**plateau**: the last {len(tail)} checks gave no further improvement (window means)."
                if gain <= 0
                else f"**plateau**: the last {len(tail)} checks gave {100 * frac:.1f}% of the total improvement "
                f"(< {100 * plateau_fraction:g}%, window means)."
                if frac < plateau_fraction
                else f"**still improving**: the last {len(tail)} checks gave {100 * frac:.1f}% of the total "
                f"improvement (plateau: < {100 * plateau_fraction:g}%, window means)."
            )
        elif total <= 0:
            text += " The check score did **not improve** on its value before training."
    w = train_log.get("weights") or {}
    if _finite(w.get("rel_l2")):
        text += (
            f" The generator's weights moved {float(w['rel_l2']):.3g} (relative L2, ||θ − θ₀|| / ||θ₀||) from "
            "their initialisation"
        )
        if w.get("min_param") is not None:
            text += f"; the least-moved weight tensor, `{w['min_param']}`, by {float(w['min_rel_l2']):.3g}"
        text += "."
    return text


# ------------------------------------------------------------------------------------------
# assumptions
# ------------------------------------------------------------------------------------------


def assumptions(cfg: dict, original_eval: dict, prune_tol: float | None = None) -> list[str]:
    """docs/method.md#decisions-where-the-paper-is-silent, as applied by this config."""
    s, b, f, e = cfg["sensitivity"], cfg["baselines"], cfg["finetune"], cfg["evaluate"]
    prim = pipeline.primary_variants(cfg)
    fid = original_eval["fid"]
    n_img, split = original_eval.get("n_images"), original_eval.get("split")
    comp = original_eval.get("complexity") or {}
    conv = comp.get("mac_conventions") or {}
    lat = [x for x in comp.get("latency") or [] if x.get("device") == "cpu"]

    ratios = ", ".join(f"{r:g}" for r in s["ratios"])
    first = f" (first {s['max_images']} images)" if s["max_images"] else ""
    inner_lv = ", ".join(map(str, pipeline.default_inner_levels(cfg)))
    inner_v = ", ".join(
        f"{k} (levels {', '.join(map(str, v['levels']))}, ratio {v['ratio']:g})"
        for k, v in prim.items()
        if v["strategy"] == "inner"
    )
    cut_v = ", ".join(
        f"{k} (k={v['k']})"
        if "k" in v
        else f"{k} (residual blocks of levels {', '.join(map(str, v['levels']))})"
        for k, v in prim.items()
        if v["strategy"] == "cut"
    )
    text = report_text(family_for_config(cfg))
    norm = "layer-normalised" if b["normalize"] else "not layer-normalised"
    tol = f", within {100 * prune_tol:g}%" if prune_tol is not None else ""
    lr = f["lr"] if f["lr"] is not None else cfg["train"]["lr"]
    if f["enabled"]:
        finetune = (
            "**Fine-tuning**: every pruned model (variants and baselines alike) starts from its pruned "
            f"weights with the same losses, the discriminator re-used, for {f['n_epochs']} + "
            f"{f['n_epochs_decay']} (linear decay) epochs at lr {lr}."
        )
    else:
        finetune = (
            "**Fine-tuning**: disabled (`finetune.enabled: false`): the tables show pruned models only."
        )
    mode = text.evaluation_mode(cfg)
    if fid.get("backend") == "standin":
        backend = (
            "a seeded, Kaiming-initialised Inception stand-in built offline: its FID values are **relative "
            "only** (comparable between the models of this report, not with published FID numbers)"
        )
    else:
        backend = "the standard Inception-v3 FID network"
    scope = f" ({comp['macs_scope']})" if comp.get("macs_scope") else ""
    physical = conv.get("physical", "ConvTranspose2d counted per input pixel")
    output = conv.get("output", "every conv counted per output pixel")
    if lat:
        x = lat[0]
        latency = (
            f"**Latency**: CPU, eager, batch 1, {x.get('threads')} thread(s), median of {x.get('iters')} "
            f"runs after {x.get('warmup')} warm-up runs ({x.get('device_name')})."
        )
        ort = [e for e in lat if e.get("mode") == "onnxruntime"]
        if ort:
            latency += (
                f" `latency_ort_ms`: the same generator exported to ONNX (opset {ort[0].get('opset')}, eval "
                f"mode; the file of `onnx/`) in {ort[0].get('runtime')} on the CPU, batch 1, "
                f"{ort[0].get('threads')} thread(s)."
            )
    else:
        latency = "**Latency**: not measured (evaluate ran with --no-latency / report.latency false)."
    out = [
        (
            f"**Filter importance**: `{s['importance']}` norm of each output filter for the sensitivity "
            f"sweep and the inner variants, `{b['importance']}` for the global baselines (the paper: L1; "
            "for ConvTranspose2d the output filter j is `weight[:, j]`)."
        ),
        (
            f"**Sensitivity protocol**: one layer pruned at a time at ratios {ratios}, no fine-tuning, "
            f"scored on the `{s['split']}` split{first}."
        ),
        text.inner_levels(cfg, inner_lv, ", ".join(inner_layers(cfg)), inner_v or "none"),
        text.cut_layers(cfg, cut_v or "none"),
        (
            f"**Global baselines**: {', '.join(b['strategies'])} (uniform = the same ratio in every "
            f"prunable layer; threshold = one {b['importance']} threshold across all layers, {norm}), each "
            f"matched to the **{b['match']}** of the pruned variant it is compared with{tol}; the match is "
            "made once, before fine-tuning (fine-tuning does not change sizes)."
        ),
        finetune,
        (
            f"**Evaluation mode**: `{e['mode']}` ({mode}), batch size {e['batch_size']}, seed "
            f"{cfg['seed']}, on {n_img} images of the `{split}` split."
        ),
        (
            f"**FID backend**: `{fid.get('backend')}` — {backend}; FID on {n_img} images is noisy, so small "
            "differences are not significant."
        ),
        f"**MAC conventions**: both are reported — physical: {physical}; output-based: {output}{scope}.",
        latency,
    ]
    bias = text.bias(cfg)
    if bias is not None:
        out.append(bias)
    lse = original_eval.get("lse")
    if lse:
        out.append(
            f"**Lip-sync network** (LSE-D/LSE-C): `{lse.get('backend')}` — {lse.get('label') or lse.get('network')}"
            + (
                " (relative values only; not the expert of the generator's loss)."
                if lse.get("backend") == "standin"
                else "."
            )
        )
    seg = original_eval.get("segmentation")
    if seg:
        out.append(f"**Segmentation score**: {seg.get('name')} — {seg.get('protocol', 'see the eval JSON')}.")
    q = cfg["report"]["quality_metric"]
    paired = (
        (" — a paired metric, which rewards predicting the mean image; a collapsed model still cannot win")
        if q in PAIRED
        else ""
    )
    out.append(
        f"**Verdict metric of the figures and findings** (`report.quality_metric`): "
        f"{metric_label(q, fid.get('backend'))} ({METRICS[q][1]} is better){paired}; KID, mIoU and "
        "L1/PSNR/SSIM are compared beside it and each finding states where they disagree "
        f"({method_ref('verdicts')}). *Degradation* = how much worse a pruned model is than the unpruned one "
        "(positive = worse; a negative degradation — pruning improved the score — counts as no effect, never "
        "as support); the sensitivity finding compares the mean degradation of the inner layers with that of "
        "the other (outer) layers at each ratio; the baseline finding compares each variant with each of its "
        "matched baselines at the final stage."
    )
    out.append(
        f"**Noise and significance** ({method_ref('verdicts')}): {noise_text(original_eval)}. Independent "
        "errors are assumed when two numbers are compared (both are scored on the same test images, so their "
        "errors are positively correlated and this overstates the noise of their difference: conservative); "
        "the sensitivity finding compares the mean "
        "degradations of the inner and the outer layers, whose noise is that of the means (the unpruned "
        "value cancels in their difference). Without a noise record (older evaluations, or a single "
        "deterministic generation without bootstrap) the tables show `± n/a` and the point values decide."
    )
    out.append(
        "**Collapse check**: every evaluated model's output diversity = the mean per-pixel standard "
        "deviation of its generated images across the split divided by that of the real images; below "
        f"`evaluate.collapse_threshold` = {collapse_threshold(cfg):g} the model is flagged collapsed (column "
        "`collapsed` of the tables, metrics.json, MLflow) and never wins a comparison, whatever the verdict "
        "metric says."
    )
    return out


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _config_summary(cfg: dict, train_log: dict | None) -> pd.DataFrame:
    t, s = cfg["train"], cfg["sensitivity"]
    epochs = (
        f"{len(train_log.get('epochs', []))} run ({t['n_epochs']} + {t['n_epochs_decay']} configured)"
        if train_log
        else f"{t['n_epochs']} + {t['n_epochs_decay']}"
    )
    text = report_text(family_for_config(cfg))
    head = text.config_rows(cfg, epochs)
    evaluation = text.evaluation_row(cfg)
    rows = [
        *head,
        (
            "sensitivity",
            (
                f"layers {', '.join(pipeline.sensitivity_layers(cfg))}; ratios "
                f"{', '.join(f'{r:g}' for r in s['ratios'])}; importance {s['importance']}"
            ),
        ),
        ("variants", ", ".join(pipeline.primary_variants(cfg))),
        ("baselines", ", ".join(pipeline.baseline_variants(cfg)) or "none"),
        (
            "fine-tuning",
            f"{cfg['finetune']['n_epochs']} + {cfg['finetune']['n_epochs_decay']} epochs"
            + "".join(f", train.{k} {v}" for k, v in sorted(cfg["finetune"].get("train", {}).items()))
            if cfg["finetune"]["enabled"]
            else "disabled",
        ),
        ("evaluation", evaluation),
        (
            "verdict metric",
            f"{cfg['report']['quality_metric']} (other metrics beside it); collapse threshold "
            f"{collapse_threshold(cfg):g}",
        ),
        ("seed", str(cfg["seed"])),
    ]
    return pd.DataFrame(rows, columns=["setting", "value"])


MAIN_MD_COLUMNS = [c for c in MAIN_COLUMNS if c not in ("group", "budget_metric")]
#: columns the markdown main table leaves out when no model has them (mIoU without a labeller,
#: LSE outside Wav2Lip, KID when disabled)
OPTIONAL_MD_COLUMNS = ("kid", "miou", "lse_d", "lse_c", "lse_backend")


def main_markdown_frame(main: pd.DataFrame) -> pd.DataFrame:
    df = main[MAIN_MD_COLUMNS]
    empty = [c for c in OPTIONAL_MD_COLUMNS if c in df.columns and df[c].isna().all()]
    return df.drop(columns=empty)


def power_attrs(original_eval: dict, metric: str, n_images) -> dict:
    """``{"n_images", "scaling_exponent", "scaling_sizes"}`` of the power statements on ``metric``:
    how its noise scales with the number of images, as measured on the original's evaluation
    (the ``scaling`` of its noise block, :mod:`unetprune.metrics.scaling`; None: not measured)."""
    sc = (((original_eval.get("noise") or {}).get("scaling") or {}).get(metric)) or {}
    return {
        "n_images": int(n_images) if _finite(n_images) else None,
        "scaling_exponent": sc.get("exponent") if _finite(sc.get("exponent")) else None,
        "scaling_sizes": [int(m) for m in sc.get("sizes") or []] or None,
    }


def _sweep_images(cfg: dict, lay: Layout, original_eval: dict):
    """The number of images each sensitivity point was scored on (the sweep JSON's record)."""
    for layer in pipeline.sensitivity_layers(cfg):
        path = lay.sensitivity_json(layer)
        if path.is_file():
            try:
                n = json.loads(path.read_text()).get("n_images")
            except json.JSONDecodeError:
                n = None
            if _finite(n):
                return int(n)
    return original_eval.get("n_images")


def render_report(
    cfg: dict,
    tables: dict,
    figs: dict[str, Path],
    lay: Layout,
    original_eval: dict,
    train_log: dict | None,
    prune_tol: float | None,
) -> str:
    main = tables["main"]
    final = pipeline.final_stage(cfg)
    diversity = {v: d for v, s, d in zip(main.variant, main.stage, main.diversity) if s == final}
    q = cfg["report"]["quality_metric"]
    sens_n = _sweep_images(cfg, lay, original_eval)
    tables["sensitivity_summary"].attrs.update(power_attrs(original_eval, q, sens_n))
    tables["comparison"].attrs.update(power_attrs(original_eval, q, original_eval.get("n_images")))
    sens_verdict, sens_lines = sensitivity_findings(tables["sensitivity_summary"])
    pos_verdict, pos_lines = position_findings(
        position_table(
            tables["sensitivity"], float(tables["sensitivity_summary"].attrs.get("z", SIGNIFICANCE_Z))
        ),
        power_attrs(original_eval, q, sens_n),
    )
    comp_verdict, comp_lines = comparison_findings(tables["comparison"], diversity)
    gate = sanity_gate(
        original_eval, gate_metrics(cfg), float(tables["comparison"].attrs.get("z", SIGNIFICANCE_Z))
    )
    gate_text = sanity_findings(gate, original_eval)
    if gate is not None and gate["passed"] is False:
        sens_verdict, comp_verdict = SANITY_MARK + sens_verdict, SANITY_MARK + comp_verdict
        pos_verdict = SANITY_MARK + pos_verdict if pos_verdict else pos_verdict
    n_layers = tables["sensitivity"].layer.nunique()
    n_ratios = tables["sensitivity"].ratio.nunique()
    exp = lay.root

    def here(path: Path) -> str:  # a path as report.md (in the experiment folder) links it
        return Path(path).relative_to(exp).as_posix()

    def folder(path: Path) -> str:
        return f"`{here(path)}/`"

    rel = {k: here(v) for k, v in figs.items()}
    n_prim, n_base = len(pipeline.primary_variants(cfg)), len(pipeline.baseline_variants(cfg))
    text = report_text(family_for_config(cfg))
    finetuned = cfg["finetune"]["enabled"]
    parts = [
        f"# Cut Inner Layers — experiment `{cfg['experiment']}`\n",
        (
            "Reproduction of Kim, Choi, Park, *Cut Inner Layers: A Structured Pruning Strategy for "
            "Efficient U-Net GANs* (arXiv 2206.14658). Every number below is read from the JSON files of "
            f"this experiment ({folder(lay.eval_dir)}, {folder(lay.sensitivity_dir)}, "
            f"{folder(lay.variants_dir)}); the tables are also in {folder(lay.tables_dir)} as CSV. The "
            f"method and the decisions taken where the paper is silent are written down in "
            f"{method_ref()}.\n"
        ),
        "## What was run\n",
        text.original_line(lay, folder)
        + f"* a per-layer sensitivity sweep of the original: {n_layers} layers × {n_ratios} ratio(s), one "
        f"layer pruned at a time, no fine-tuning ({folder(lay.sensitivity_dir)});\n"
        f"* {n_prim} pruned variant(s) ({', '.join(pipeline.primary_variants(cfg))}) and {n_base} matched "
        f"global baseline(s) ({folder(lay.variants_dir)}, stage `{PRUNED}`)"
        + (f", each fine-tuned (stage `{FINETUNED}`)" if finetuned else "")
        + ";\n"
        f"* every model scored on {original_eval.get('n_images')} images of the "
        f"`{original_eval.get('split')}` split ({folder(lay.eval_dir)}).\n",
        "### Configuration\n",
        to_markdown(_config_summary(cfg, train_log)),
        "## Training of the original\n",
        learning_summary(train_log) + "\n",
        f"![learning curve]({rel['learning_curve_png']})\n" if "learning_curve_png" in rel else "",
        "## Findings\n",
        "### Does the original do its task? (sanity gate)\n",
        gate_text + "\n",
        "### Are the inner layers the prunable ones?\n",
        sens_verdict + "\n",
        *[f"* {x}" for x in sens_lines],
        "",
        *([pos_verdict + "\n", *[f"* {x}" for x in pos_lines], ""] if pos_verdict else []),
        "### Do inner/cut variants beat the matched global baselines?\n",
        comp_verdict + "\n",
        *[f"* {x}" for x in comp_lines],
        "",
        *beyond_sections(cfg, main, lay),  # the plan at equal budget; distillation (report/beyond.py)
        caveat(original_eval, q) + "\n",
        "## Main comparison\n",
        (
            f"Original, inner-pruned, cut and matched global baselines, before (`{pipeline.PRUNED}`) and "
            f"after (`{pipeline.FINETUNED}`) fine-tuning. MACs in millions in both conventions; latency = "
            f"CPU batch 1 median (`latency_ms` PyTorch eager, `latency_ort_ms` ONNX Runtime), measured by each evaluation job beside the others (PyTorch: the lower of a variant's "
            f"two stages, which share the architecture; ONNX Runtime: the exported stage's file, once; `benchmarks/latency.py` measures side by side on a "
            f"quiet machine); `budget_gap` = a baseline's {cfg['baselines']['match']} relative to the "
            f"variant it is matched to; `diversity` = output diversity relative to the real images and "
            f"`collapsed` = below {collapse_threshold(cfg):g} (such a model never wins). "
            f"([CSV]({here(lay.table('main'))}))\n"
        ),
        to_markdown(with_noise_markdown(main_markdown_frame(main))),
        f"### Variants vs matched baselines ({metric_label(q, main.attrs.get('fid_backend'))})\n",
        (
            "`metric_winner` = the model the verdict metric prefers; `resolved` = whether the difference "
            f"(`advantage`, ± the combined noise) exceeds {SIGNIFICANCE_Z:g} standard deviations (n/a: noise "
            "unknown); `winner` = the verdict (`not resolved` within the noise; a collapsed model never wins: "
            "`decided_by` = `collapse`); `agree` / `disagree` = the other metrics that prefer the same / the "
            "other model beyond their noise, `unresolved` = those within it.\n"
        ),
        to_markdown(markdown_view("comparison", tables["comparison"]))
        if not tables["comparison"].empty
        else "No baselines.\n",
        "## Per-layer sensitivity\n",
        f"![sensitivity]({rel['sensitivity_png']})\n",
        (
            f"{METRICS[q][0]} of the model with one layer pruned (rows: layers outer → inner → outer; "
            f"columns: ratios; `unpruned` = the original model), ± its noise (standard deviation; n/a: not "
            f"measured); error bars in the figure: ± 1 standard deviation; *(collapsed)* / red crosses = "
            f"output diversity below {collapse_threshold(cfg):g} of the real images'. "
            f"([CSV]({here(lay.table('sensitivity'))}))\n"
        ),
        to_markdown(markdown_view("sensitivity_matrix", tables["sensitivity_matrix"])),
        (
            "Mean degradation (positive = worse than unpruned, ± its noise) of inner vs outer layers at each "
            "ratio; `finding` = support / against / no effect (negative degradations count as no effect) / "
            f"not resolved (within {SIGNIFICANCE_Z:g} standard deviations of the noise), `finding_point` = the "
            "same on the point values alone, `findings_by_metric` = the finding on every other metric, "
            "`disagree` = those that differ beyond their noise, `collapsed_points` = collapsed (layer@ratio):\n"
        ),
        to_markdown(markdown_view("sensitivity_summary", tables["sensitivity_summary"])),
        "## Quality vs size\n",
        f"![trade-off]({rel['tradeoff_png']})\n",
        (
            "Hollow markers: pruned without fine-tuning; filled: fine-tuned (or the original); error bars: ± 1 "
            "standard deviation of the noise where it was measured; a red cross marks a collapsed model.\n"
        ),
        "## Samples\n",
        (
            f"The same `{original_eval.get('split')}` inputs through every model "
            f"({'fine-tuned' if cfg['finetune']['enabled'] else 'pruned'} variants):\n"
        ),
        f"![samples]({rel['samples_png']})\n",
    ]
    if "samples_pruned_png" in rel:
        parts.append(f"Before fine-tuning: ![samples before fine-tuning]({rel['samples_pruned_png']})\n")
    note = text.samples_note(lay, here)
    if note:
        parts.append(note)
    parts.append(comparability_section(cfg, {"original": original_eval}) + "\n")
    parts += [
        "## Assumptions (where the paper is silent)\n",
        f"The decisions of {method_ref('decisions-where-the-paper-is-silent')}, as this config applies "
        "them:\n",
        *[f"{i}. {a}" for i, a in enumerate(assumptions(cfg, original_eval, prune_tol), 1)],
        "",
    ]
    return "\n".join(parts) + "\n"


def _flag_sanity(cfg: dict, lay: Layout, original_eval: dict) -> None:
    """``sanity_passed`` (the sanity gate's outcome) on the original's entry of ``metrics.json``
    (left out when the original's evaluation scored no trivial generator)."""
    gate = sanity_gate(original_eval, gate_metrics(cfg))
    path = lay.metrics_json
    if gate is None or gate["passed"] is None or not path.is_file():
        return
    metrics = json.loads(path.read_text())
    entry = metrics.setdefault(ORIGINAL, {})
    entry["sanity_passed"] = bool(gate["passed"])
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")


def build_report(cfg: dict, base: Path | str = DEFAULT_BASE) -> dict[str, Path]:
    """Tables, figures and report.md of one experiment; returns ``{name: written path}``, which
    holds every file of :meth:`unetprune.layout.Layout.report_outputs`.

    Every input is checked before anything is written, so a missing file leaves no
    half-written report behind."""
    lay = Layout.from_config(cfg, base)
    tables = all_tables(cfg, base)
    original_eval = load_eval(cfg, base, ORIGINAL, ORIGINAL)
    split = original_eval.get("split") or "test"
    train_log = None
    tl = lay.train_log(ORIGINAL)
    if tl.is_file():
        try:
            train_log = json.loads(tl.read_text())
        except json.JSONDecodeError:
            train_log = None
    prune_tol = None
    for name in pipeline.baseline_variants(cfg):
        pj = lay.prune_json(name)
        if pj.is_file():
            budget = (json.loads(pj.read_text()).get("info") or {}).get("budget") or {}
            prune_tol = budget.get("tol", prune_tol)
            break
    stage = pipeline.final_stage(cfg)
    for v, s in figures.sample_models(cfg, stage) + (
        figures.sample_models(cfg, PRUNED) if stage != PRUNED else []
    ):
        ck = lay.checkpoint(v, s)
        if not ck.is_file():
            raise ReportError(f"missing {ck}: {_cmd_hint(cfg, base, 'checkpoint', v, s)}")

    written = write_tables(cfg, base, tables)
    _flag_sanity(cfg, lay, original_eval)
    title = f"{cfg['experiment']}: "
    figs = {
        "sensitivity_png": figures.sensitivity_figure(
            tables["sensitivity"],
            lay.figure("sensitivity"),
            title + "per-layer sensitivity (one layer pruned at a time, no fine-tuning)",
        ),
        "tradeoff_png": figures.tradeoff_figure(
            tables["main"], lay.figure("tradeoff"), title=title + "quality vs size"
        ),
        "samples_png": figures.sample_grid(cfg, base, lay.figure("samples"), stage, split),
    }
    if stage != PRUNED:
        figs["samples_pruned_png"] = figures.sample_grid(
            cfg, base, lay.figure("samples_pruned"), PRUNED, split
        )
    figs["learning_curve_png"] = figures.learning_curve_figure(
        train_log,
        lay.figure("learning_curve"),
        title + "learning curve of the original",
        check_label="check score: " + report_text(family_for_config(cfg)).check_score(),
    )
    if train_log and not train_log.get("imported"):
        written.update(write_table(learning_curve_table(train_log), lay, "learning_curve"))
    written.update(figs)
    text = render_report(cfg, tables, figs, lay, original_eval, train_log, prune_tol)
    atomic_write_text(lay.report_md, text)
    written["report_md"] = lay.report_md
    # the layout owns the list of the report's declared outputs (the workflow's targets)
    unwritten = [str(p) for p in lay.report_outputs() if p not in set(written.values())]
    if unwritten:
        raise ReportError(f"the report wrote no {', '.join(unwritten)}, which Layout.report_outputs declares")
    return written
