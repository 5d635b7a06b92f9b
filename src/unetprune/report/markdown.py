"""An experiment's ``report.md`` (:attr:`unetprune.layout.Layout.report_md`): what was run, the
tables, the figures, the findings (computed from the tables, never typed in) and every
assumption made where the paper is silent (docs/method.md#decisions-where-the-paper-is-silent)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import pipeline
from ..fileio import atomic_write_text
from ..layout import DEFAULT_BASE, FINETUNED, ORIGINAL, PRUNED, Layout
from . import figures
from .tables import (
    MAIN_COLUMNS,
    METRICS,
    ReportError,
    _cmd_hint,
    all_tables,
    inner_layers,
    load_eval,
    to_markdown,
    write_tables,
)


#: The repository document that states the method, the decisions where the paper is silent
#: and the check numbers.  A report lives in the results folder, which may be anywhere, so it
#: names the document by its path in the repository instead of a relative link.
METHOD_DOC = "docs/method.md"
REPOSITORY = "the unetprune repository"


def method_ref(anchor: str = "") -> str:
    """``docs/method.md#anchor`` in the unetprune repository, as report.md cites it."""
    return f"`{METHOD_DOC}{'#' + anchor if anchor else ''}` in {REPOSITORY}"


def _f(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _signed(x, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.{digits}g}"


# ------------------------------------------------------------------------------------------
# findings
# ------------------------------------------------------------------------------------------


def sensitivity_findings(summary: pd.DataFrame) -> tuple[str, list[str]]:
    """(verdict sentence, one sentence per ratio) on the inner-layers-are-prunable pattern."""
    metric = summary.attrs.get("metric", "fid")
    label = METRICS[metric][0]
    lines = []
    for _, r in summary.iterrows():
        if r.inner_less_sensitive is None:
            lines.append(
                f"At ratio {r.ratio:g} the sweep has no {'inner' if not r.n_inner else 'outer'} layer, so "
                "inner and outer layers cannot be compared."
            )
            continue
        lines.append(
            f"At ratio {r.ratio:g}, pruning one inner layer ({r.inner_layers}) degrades {label} by "
            f"{_signed(r.mean_degradation_inner)} on average ({_signed(r.mean_degradation_pct_inner, 3)}%), "
            f"one outer layer by {_signed(r.mean_degradation_outer)} "
            f"({_signed(r.mean_degradation_pct_outer, 3)}%): the inner layers are "
            f"{'less' if r.inner_less_sensitive else 'not less'} sensitive (difference outer − inner "
            f"{_signed(r.difference)})."
        )
    judged = summary[summary.inner_less_sensitive.notna()]
    k, n = int(judged.inner_less_sensitive.astype(bool).sum()), len(judged)
    if n == 0:
        verdict = "The sweep cannot show or refute the paper's pattern: it lacks inner or outer layers."
    elif k == n:
        verdict = (
            "**Yes**: the sensitivity curve shows the paper's inner-layers-are-prunable pattern at every "
            f"swept ratio ({k} of {n}): pruning an inner layer costs less {label} than pruning an outer one."
        )
    elif k == 0:
        verdict = (
            "**No**: the sensitivity curve does not show the paper's inner-layers-are-prunable pattern at "
            f"any swept ratio (0 of {n}): on this data the inner layers are at least as sensitive as the "
            "outer ones."
        )
    else:
        verdict = (
            f"**Partly**: the sensitivity curve shows the paper's inner-layers-are-prunable pattern at {k} "
            f"of {n} swept ratios "
            f"({', '.join(f'{r:g}' for r in judged.ratio[judged.inner_less_sensitive.astype(bool)])})."
        )
    return verdict, lines


def comparison_findings(comp: pd.DataFrame) -> tuple[str, list[str]]:
    """(summary sentence, one sentence per variant-vs-baseline pair)."""
    if comp.empty:
        return "No global baselines were configured, so there is nothing to compare.", []
    metric, stage = comp.attrs.get("metric", "fid"), comp.attrs.get("stage", "")
    label = METRICS[metric][0]
    stage_txt = "after fine-tuning" if stage == pipeline.FINETUNED else "without fine-tuning"
    lines = []
    for _, r in comp.iterrows():
        if r.winner == "tie":
            res = "a tie"
        elif r.winner == r.variant:
            res = f"**{r.variant} wins** by {abs(r.advantage):.4g} ({abs(r.advantage_pct):.3g}%)"
        else:
            res = f"**{r.baseline} wins** by {abs(r.advantage):.4g} ({abs(r.advantage_pct):.3g}%)"
        lines.append(
            f"{r.variant} vs {r.baseline} ({stage_txt}): {label} {_f(r.variant_value)} vs "
            f"{_f(r.baseline_value)} ({r.better} is better): {res}; budgets ({r.budget_metric}) "
            f"{r.variant_budget:,} vs {r.baseline_budget:,} (baseline {100 * r.budget_gap:+.2f}%)."
        )
    wins = int((comp.winner == comp.variant).sum())
    n = len(comp)
    prim = comp.variant.unique()
    per = "; ".join(
        f"{v}: {int(((comp.variant == v) & (comp.winner == v)).sum())} of {int((comp.variant == v).sum())}"
        for v in prim
    )
    worst_gap = float(comp.budget_gap.abs().max())
    verdict = (
        f"{'**Yes**' if wins == n else '**No**' if wins == 0 else '**Partly**'}: the inner/cut variants "
        f"beat their matched global baselines in {wins} of {n} comparisons on {label} {stage_txt} ({per}); "
        f"the matched budgets differ by at most {100 * worst_gap:.2f}% ({comp.budget_metric.iloc[0]})."
    )
    return verdict, lines


def caveat(original_eval: dict) -> str:
    """How much the findings can be trusted, from the evaluation's own record."""
    fid = original_eval.get("fid") or {}
    n, split, backend = original_eval.get("n_images"), original_eval.get("split"), fid.get("backend")
    rel = " (a stand-in network: relative values only)" if backend == "standin" else ""
    return (
        f"*These findings rest on {n} images of the `{split}` split scored with the `{backend}` FID backend"
        f"{rel}; differences within the noise of such a set are not evidence either way.*"
    )


# ------------------------------------------------------------------------------------------
# assumptions
# ------------------------------------------------------------------------------------------


def assumptions(cfg: dict, original_eval: dict, prune_tol: float | None = None) -> list[str]:
    """docs/method.md#decisions-where-the-paper-is-silent, as applied by this config."""
    s, b, f, e, m = cfg["sensitivity"], cfg["baselines"], cfg["finetune"], cfg["evaluate"], cfg["model"]
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
    cut_v = ", ".join(f"{k} (k={v['k']})" for k, v in prim.items() if v["strategy"] == "cut")
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
    if e["mode"] == "train_bn":
        mode = (
            "BatchNorm on batch statistics and dropout on, seeded — what the pix2pix reference does at "
            "test time"
        )
    else:
        mode = "`model.eval()`: running BatchNorm statistics, no dropout"
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
    else:
        latency = "**Latency**: not measured (evaluate ran with --no-latency / report.latency false)."
    if m["bias_mode"] == "paper":
        bias = (
            "conv bias wherever no norm follows (the paper's parameter count, 54,414,531 for unet_256; "
            f"{method_ref('check-numbers')})"
        )
    else:
        bias = "the official pix2pix code's biases (only the outermost up-conv; 54,413,955 for unet_256)"

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
        (
            f"**Inner levels**: level(s) {inner_lv} of this num_downs={m['num_downs']} U-Net, i.e. the "
            "levels whose encoder and decoder outputs both have the largest width (the 8·ngf levels; 5–8 "
            f"for unet_256); their layers are {', '.join(inner_layers(cfg))}. Inner variants: "
            f"{inner_v or 'none'}."
        ),
        (
            "**Cut inner layers**: remove the innermost k levels; the new innermost up-conv keeps only the "
            "weight slice of its encoder input; every surviving weight is copied from the original model "
            f"(the result equals a num_downs − k U-Net). Cut variants: {cut_v or 'none'}."
        ),
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
        f"**Bias mode**: `{m['bias_mode']}` — {bias}.",
    ]
    seg = original_eval.get("segmentation")
    if seg:
        out.append(f"**Segmentation score**: {seg.get('name')} — {seg.get('protocol', 'see the eval JSON')}.")
    q = cfg["report"]["quality_metric"]
    out.append(
        f"**Quality metric of the figures and findings**: {METRICS[q][0]} ({METRICS[q][1]} is better). "
        "*Degradation* = how much worse a pruned model is than the unpruned one (positive = worse); the "
        "sensitivity finding compares the mean degradation of the inner layers with that of the other "
        "(outer) layers at each ratio; the baseline finding compares each variant with each of its matched "
        "baselines at the final stage."
    )
    return out


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _config_summary(cfg: dict, train_log: dict | None) -> pd.DataFrame:
    d, m, t, e, s = cfg["data"], cfg["model"], cfg["train"], cfg["evaluate"], cfg["sensitivity"]
    epochs = (
        f"{len(train_log.get('epochs', []))} run ({t['n_epochs']} + {t['n_epochs_decay']} configured)"
        if train_log
        else f"{t['n_epochs']} + {t['n_epochs_decay']}"
    )
    rows = [
        ("dataset", f"{d['dataset']} ({d['direction']}, {d['crop_size']}px)"),
        (
            "generator",
            (
                f"U-Net num_downs={m['num_downs']}, ngf={m['ngf']}, norm={m['norm']}, "
                f"dropout={m['use_dropout']}, bias_mode={m['bias_mode']}"
            ),
        ),
        (
            "original training",
            f"epochs {epochs}, batch {t['batch_size']}, lr {t['lr']}, lambda_l1 {t['lambda_l1']}",
        ),
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
            if cfg["finetune"]["enabled"]
            else "disabled",
        ),
        (
            "evaluation",
            (
                f"mode {e['mode']}, FID backend {e['fid_backend']}, segmentation {e['segmentation']}, "
                f"max_images {e['max_images']}"
            ),
        ),
        ("quality metric", cfg["report"]["quality_metric"]),
        ("seed", str(cfg["seed"])),
    ]
    return pd.DataFrame(rows, columns=["setting", "value"])


MAIN_MD_COLUMNS = [c for c in MAIN_COLUMNS if c not in ("group", "budget_metric")]


def render_report(
    cfg: dict,
    tables: dict,
    figs: dict[str, Path],
    lay: Layout,
    original_eval: dict,
    train_log: dict | None,
    prune_tol: float | None,
) -> str:
    sens_verdict, sens_lines = sensitivity_findings(tables["sensitivity_summary"])
    comp_verdict, comp_lines = comparison_findings(tables["comparison"])
    main = tables["main"]
    q = cfg["report"]["quality_metric"]
    n_layers = tables["sensitivity"].layer.nunique()
    n_ratios = tables["sensitivity"].ratio.nunique()
    exp = lay.root

    def here(path: Path) -> str:  # a path as report.md (in the experiment folder) links it
        return Path(path).relative_to(exp).as_posix()

    def folder(path: Path) -> str:
        return f"`{here(path)}/`"

    rel = {k: here(v) for k, v in figs.items()}
    n_prim, n_base = len(pipeline.primary_variants(cfg)), len(pipeline.baseline_variants(cfg))
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
        "* the **original** (unpruned) U-Net generator trained with the pix2pix recipe "
        f"({folder(lay.original_dir)});\n"
        f"* a per-layer sensitivity sweep of the original: {n_layers} layers × {n_ratios} ratio(s), one "
        f"layer pruned at a time, no fine-tuning ({folder(lay.sensitivity_dir)});\n"
        f"* {n_prim} pruned variant(s) ({', '.join(pipeline.primary_variants(cfg))}) and {n_base} matched "
        f"global baseline(s) ({folder(lay.variants_dir)}, stage `{PRUNED}`)"
        + (f", each fine-tuned (stage `{FINETUNED}`)" if finetuned else "")
        + ";\n"
        f"* every model scored on {original_eval.get('n_images')} images of the "
        f"`{original_eval.get('split')}` split ({folder(lay.eval_dir)}).\n",
        "### Configuration\n",
        to_markdown(_config_summary(cfg, train_log)),
        "## Findings\n",
        "### Are the inner layers the prunable ones?\n",
        sens_verdict + "\n",
        *[f"* {x}" for x in sens_lines],
        "",
        "### Do inner/cut variants beat the matched global baselines?\n",
        comp_verdict + "\n",
        *[f"* {x}" for x in comp_lines],
        "",
        caveat(original_eval) + "\n",
        "## Main comparison\n",
        (
            f"Original, inner-pruned, cut and matched global baselines, before (`{pipeline.PRUNED}`) and "
            f"after (`{pipeline.FINETUNED}`) fine-tuning. MACs in millions in both conventions; latency = "
            f"CPU batch 1 median; `budget_gap` = a baseline's {cfg['baselines']['match']} relative to the "
            f"variant it is matched to. ([CSV]({here(lay.table('main'))}))\n"
        ),
        to_markdown(main[MAIN_MD_COLUMNS]),
        f"### Variants vs matched baselines ({METRICS[q][0]})\n",
        to_markdown(tables["comparison"]) if not tables["comparison"].empty else "No baselines.\n",
        "## Per-layer sensitivity\n",
        f"![sensitivity]({rel['sensitivity_png']})\n",
        (
            f"{METRICS[q][0]} of the model with one layer pruned (rows: layers outer → inner → outer; "
            f"columns: ratios; `unpruned` = the original model). ([CSV]({here(lay.table('sensitivity'))}))\n"
        ),
        to_markdown(tables["sensitivity_matrix"]),
        "Mean degradation (positive = worse than unpruned) of inner vs outer layers at each ratio:\n",
        to_markdown(tables["sensitivity_summary"]),
        "## Quality vs size\n",
        f"![trade-off]({rel['tradeoff_png']})\n",
        "Hollow markers: pruned without fine-tuning; filled: fine-tuned (or the original).\n",
        "## Samples\n",
        (
            f"The same `{original_eval.get('split')}` inputs through every model "
            f"({'fine-tuned' if cfg['finetune']['enabled'] else 'pruned'} variants):\n"
        ),
        f"![samples]({rel['samples_png']})\n",
    ]
    if "samples_pruned_png" in rel:
        parts.append(f"Before fine-tuning: ![samples before fine-tuning]({rel['samples_pruned_png']})\n")
    parts += [
        "## Assumptions (where the paper is silent)\n",
        f"The decisions of {method_ref('decisions-where-the-paper-is-silent')}, as this config applies "
        "them:\n",
        *[f"{i}. {a}" for i, a in enumerate(assumptions(cfg, original_eval, prune_tol), 1)],
        "",
    ]
    return "\n".join(parts) + "\n"


def build_report(cfg: dict, base: Path | str = DEFAULT_BASE) -> dict[str, Path]:
    """Tables, figures and report.md of one experiment; returns ``{name: written path}``.

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
    written.update(figs)
    text = render_report(cfg, tables, figs, lay, original_eval, train_log, prune_tol)
    atomic_write_text(lay.report_md, text)
    written["report_md"] = lay.report_md
    return written
