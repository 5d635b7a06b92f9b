"""The paper's figures, drawn from the tables and the checkpoints (matplotlib's Agg canvas,
no pyplot: no global state, no display needed).

* :func:`sensitivity_figure` — quality vs layer (outer → inner → outer, like the paper's
  Figure 1), one curve per ratio with ± 1 std error bars where the noise was measured, the
  unpruned model as a dashed line (± its std as a band), inner levels shaded, collapsed points
  crossed out in red;
* :func:`tradeoff_figure` — quality vs params / physical MACs / output-based MACs of every
  model, pruned (hollow) and fine-tuned (filled), inner/cut vs global baselines by marker,
  ± 1 std error bars, collapsed models crossed out in red;
* :func:`learning_curve_figure` — the original's check score and training losses per epoch;
* :func:`sample_grid` — the same evaluation inputs through every model, one column per model.
"""

from __future__ import annotations

from contextlib import closing

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import pipeline
from ..fileio import atomic_write
from ..layout import FINETUNED, ORIGINAL, PRUNED, Layout
from .load import ReportError, _cmd_hint
from .tables import learning_curve_table
from ..report_text import report_text
from .verdicts import METRICS, flag

DPI = 120
#: how a collapsed model / point is drawn (on top of its own marker)
COLLAPSED_STYLE = {
    "marker": "X",
    "color": "red",
    "s": 140,
    "linewidths": 0.8,
    "edgecolors": "white",
    "zorder": 5,
}


def _stds(values) -> np.ndarray | None:
    """The std column as floats; None when no value is finite (no error bars to draw)."""
    a = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
    return a if np.isfinite(a).any() else None


def _collapsed_handle(threshold: float | None) -> Line2D:
    what = f"collapsed (diversity < {threshold:g})" if threshold is not None else "collapsed"
    return Line2D([], [], ls="", marker="X", color="red", mec="white", ms=10, label=what)


def _metric_label(metric: str, backend: str | None = None) -> str:
    label, direction = METRICS[metric]
    if metric in ("fid", "kid") and backend:
        label += f" [{backend}]"
    return f"{label} ({direction} is better)"


def sensitivity_figure(df: pd.DataFrame, path: Path | str, title: str = "") -> Path:
    """One curve per ratio across the swept layers (``df`` = :func:`tables.sensitivity_table`)."""
    metric = df.attrs.get("metric", "fid")
    layers = list(dict.fromkeys(df.sort_values("position").layer))
    x = {layer: i for i, layer in enumerate(layers)}
    fig = _figure(max(6.0, 0.55 * len(layers) + 2), 4.2)
    ax = fig.subplots()
    inner = [layer for layer in layers if bool(df.loc[df.layer == layer, "inner"].iloc[0])]
    for j, layer in enumerate(inner):
        ax.axvspan(
            x[layer] - 0.5,
            x[layer] + 0.5,
            color="tab:orange",
            alpha=0.12,
            lw=0,
            label="inner levels" if j == 0 else None,
        )
    ratios = sorted(df.ratio.unique())
    cmap = matplotlib.colormaps["viridis"]
    n_r = len(ratios)
    any_collapsed = False
    for i, r in enumerate(ratios):
        g = df[df.ratio == r].sort_values("position")
        # ratios side by side within a layer's slot, so their error bars do not hide each other
        xs = np.array([x[v] for v in g.layer], dtype=float) + (0.12 * (i - (n_r - 1) / 2) if n_r > 1 else 0.0)
        color = cmap(i / max(1, n_r - 1))
        yerr = _stds(g["quality_std"]) if "quality_std" in g.columns else None
        ax.errorbar(
            xs,
            g.quality,
            yerr=None if yerr is None else np.nan_to_num(yerr, nan=0.0),
            marker="o",
            ms=4,
            lw=1.5,
            capsize=2.5 if yerr is not None else 0,
            elinewidth=1,
            color=color,
            label=f"ratio {r:g}",
        )
        if "collapsed" in g.columns:
            hit = np.array([flag(c) for c in g.collapsed], dtype=bool)
            if hit.any():
                any_collapsed = True
                ax.scatter(xs[hit], np.asarray(g.quality, dtype=float)[hit], **COLLAPSED_STYLE)
    full = df.quality_full.dropna()
    if len(full):
        f0 = float(full.iloc[0])
        ax.axhline(f0, color="black", ls="--", lw=1, label="unpruned")
        fs = _stds(df["quality_full_std"]) if "quality_full_std" in df.columns else None
        if fs is not None:
            s0 = float(fs[np.isfinite(fs)][0])
            ax.axhspan(f0 - s0, f0 + s0, color="black", alpha=0.08, lw=0, label="unpruned ± 1 std")
    ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 10 else 0)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_xlabel("pruned layer (outer → inner → outer)")
    ax.set_ylabel(_metric_label(metric, df.fid_backend.iloc[0] if len(df) else None))
    ax.set_title(title or "per-layer sensitivity (one layer pruned at a time, no fine-tuning)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any_collapsed:
        handles.append(_collapsed_handle(df.attrs.get("collapse_threshold")))
        labels.append(handles[-1].get_label())
    ax.legend(handles, labels, fontsize=8, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


_MARKERS = {
    "none": "*",
    "inner": "o",
    "cut": "s",
    "plan": "D",
    "global-uniform": "^",
    "global-threshold": "v",
}
_COLORS = {
    "none": "black",
    "inner": "tab:blue",
    "cut": "tab:orange",
    "plan": "tab:green",
    "global-uniform": "tab:gray",
    "global-threshold": "tab:red",
}
_LABELS = {
    "none": "original",
    "inner": "inner pruning",
    "cut": "cut inner layers",
    "plan": "sensitivity-guided plan",
    "global-uniform": "global uniform (baseline)",
    "global-threshold": "global threshold (baseline)",
}


def tradeoff_figure(main: pd.DataFrame, path: Path | str, metric: str | None = None, title: str = "") -> Path:
    """Quality vs size of every model (``main`` = :func:`tables.main_table`)."""
    metric = metric or main.attrs.get("metric", "fid")
    axes_spec = [
        ("params", "parameters"),
        ("macs_physical", "MACs, physical (ConvT per input pixel)"),
        ("macs_output", "MACs, output-based (per output pixel)"),
    ]
    fig = _figure(15, 4.6)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (col, xlabel) in zip(axes, axes_spec):
        for v, g in main.groupby("variant", sort=False):
            s = g.strategy.iloc[0]
            g = g.sort_values("stage", key=lambda c: c.map({ORIGINAL: 0, PRUNED: 0, FINETUNED: 1}))
            if len(g) > 1:
                ax.plot(g[col], g[metric], color=_COLORS[s], lw=0.8, alpha=0.6)
            for _, row in g.iterrows():
                filled = row.stage != pipeline.PRUNED
                std = row.get(f"{metric}_std")
                if std is not None and np.isfinite(float(std)):
                    ax.errorbar(
                        row[col],
                        row[metric],
                        yerr=float(std),
                        fmt="none",
                        ecolor=_COLORS[s],
                        elinewidth=1,
                        capsize=3,
                        alpha=0.8,
                        zorder=2,
                    )
                ax.scatter(
                    row[col],
                    row[metric],
                    marker=_MARKERS[s],
                    s=110 if s == "none" else 55,
                    facecolors=_COLORS[s] if filled else "none",
                    edgecolors=_COLORS[s],
                    linewidths=1.4,
                    zorder=3,
                )
                if flag(row.get("collapsed")):
                    ax.scatter(row[col], row[metric], **COLLAPSED_STYLE)
            if ax is axes[0]:  # names once (the other panels share the y-axis and the markers)
                last = g.iloc[-1]
                ax.annotate(
                    v, (last[col], last[metric]), fontsize=6, xytext=(4, 3), textcoords="offset points"
                )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(_metric_label(metric, main.attrs.get("fid_backend")))
    handles = [
        Line2D([], [], ls="", marker=_MARKERS[s], color=_COLORS[s], label=_LABELS[s])
        for s in _MARKERS
        if s in set(main.strategy)
    ]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="pruned (no fine-tuning)"),
        Line2D([], [], ls="", marker="o", color="black", label="fine-tuned / original"),
    ]
    if "collapsed" in main.columns and any(flag(c) for c in main.collapsed):
        handles.append(_collapsed_handle(main.attrs.get("collapse_threshold")))
    stds = _stds(main[f"{metric}_std"]) if f"{metric}_std" in main.columns else None
    if stds is not None:
        handles.append(Line2D([], [], color="gray", marker="|", ms=10, lw=0, mew=1, label="± 1 std (noise)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or f"quality vs size ({METRICS[metric][0]})")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return _save(fig, path)


def learning_curve_figure(
    train_log: dict | None, path: Path | str, title: str = "", check_label: str = "check score"
) -> Path:
    """The original's learning curve: the trainer's check score per epoch (epoch 0 = before
    training) with the weights' distance from their initialisation, and the mean training
    losses per epoch; ``check_label`` names what the check score measures (the family's
    ``ReportText.check_score``).  Always writes the file (a note instead of curves when the run has none:
    imported weights, no check, or a train.json from before curves were recorded)."""
    fig = _figure(11, 4.2)
    ax_check, ax_loss = fig.subplots(1, 2)
    log = train_log or {}
    curve = learning_curve_table(log) if log else None
    ev = log.get("eval") or {}
    checks = curve.dropna(subset=["check"]) if curve is not None and len(curve) else None
    if checks is not None and len(checks):
        ax_check.plot(checks.epoch, checks.check, marker="o", ms=3, color="tab:blue", label="check score")
        best = checks.loc[checks.check.idxmin()]
        ax_check.scatter(
            [best.epoch],
            [best.check],
            s=60,
            facecolors="none",
            edgecolors="tab:blue",
            zorder=4,
            label=f"best {best.check:.4g} (epoch {int(best.epoch)})",
        )
        rel = checks.dropna(subset=["weights_rel_l2"])
        if len(rel):
            tw = ax_check.twinx()
            tw.plot(rel.epoch, rel.weights_rel_l2, color="tab:gray", ls=":", lw=1.2)
            tw.set_ylabel("weights: ||θ − θ₀|| / ||θ₀||", color="tab:gray", fontsize=8)
            tw.tick_params(axis="y", labelcolor="tab:gray", labelsize=7)
            ax_check.plot([], [], color="tab:gray", ls=":", label="weights moved from init (right axis)")
    elif "l1_init" in ev and "l1_final" in ev:
        n = len(log.get("epochs") or [])
        ax_check.plot(
            [0, n],
            [ev["l1_init"], ev["l1_final"]],
            marker="o",
            ls="--",
            color="tab:blue",
            label="check before / after (no per-epoch curve)",
        )
    else:
        why = (
            "imported weights: not trained here"
            if log.get("imported")
            else "no learning check recorded"
            if log
            else "no train.json"
        )
        ax_check.text(0.5, 0.5, why, ha="center", va="center", transform=ax_check.transAxes)
    t = (log.get("config") or {}).get("train") or {}
    if t.get("n_epochs") and t.get("n_epochs_decay"):
        for ax in (ax_check, ax_loss):
            ax.axvline(t["n_epochs"], color="black", lw=0.8, ls="--", alpha=0.5)
        ax_check.plot([], [], color="black", lw=0.8, ls="--", alpha=0.5, label="lr decay starts")
    what = f"{ev.get('split')} split, {ev.get('n_images')} images" if ev else ""
    ax_check.set_title(f"learning check ({what}, lower is better)" if what else "learning check", fontsize=9)
    ax_check.set_xlabel("epoch (0 = before training)")
    ax_check.set_ylabel(check_label, fontsize=8)
    ax_check.grid(alpha=0.3)
    if ax_check.get_legend_handles_labels()[0]:
        ax_check.legend(fontsize=7)
    loss_cols = [c for c in (curve.columns if curve is not None else []) if c.startswith("train_")]
    if loss_cols:
        e = curve[curve.epoch > 0]
        for c in loss_cols:
            ax_loss.plot(e.epoch, e[c], marker=".", lw=1.2, label=c[len("train_") :])
        ax_loss.set_yscale("symlog", linthresh=1e-3)
        ax_loss.legend(fontsize=7)
    else:
        ax_loss.text(0.5, 0.5, "no training epochs", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.set_title("training losses (epoch means)", fontsize=9)
    ax_loss.set_xlabel("epoch")
    ax_loss.grid(alpha=0.3)
    fig.suptitle(title or "learning curve", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def sample_models(cfg: dict, stage: str) -> list[tuple[str, str]]:
    """(variant, stage) of the sample-grid columns: the original, then every variant at ``stage``."""
    return [(ORIGINAL, ORIGINAL)] + [(v, stage) for v in pipeline.all_variants(cfg)]


def sample_grid(
    cfg: dict, base: Path | str, path: Path | str, stage: str, split: str = "test", mode: str | None = None
) -> Path:
    """Rows = ``report.sample_images`` items of ``split`` as the evaluation generates them (the
    model family's evaluation set): the first items, or items spread over the first
    ``sample_span`` of the family's :class:`~unetprune.report_text.ReportText` (e.g. frames of the
    first test clip); columns = input, target, every model."""
    import torch

    from ..checkpoint import generator_from_checkpoint
    from ..config import deep_merge
    from ..family import family_for_config
    from ..translate import generate_batches

    lay = Layout.from_config(cfg, base)
    want = int(cfg["report"]["sample_images"])
    family = family_for_config(cfg)
    span = report_text(family).sample_span  # rows spread over the first `span` items (e.g. of a clip)
    limit = span or want
    try:
        es = family.eval_set(deep_merge(cfg, {"evaluate": {"max_images": limit}}), split, lay.data_root)
    except (OSError, ValueError) as e:
        raise ReportError(
            f"{e} (the dataset split of the sample grid, made by the data rules or found at `data.root`)"
        ) from None
    n = min(want, es.n)
    if n == 0:
        raise ReportError(f"split {split} of {lay.data_root} has no images for the sample grid")
    rows = np.linspace(0, es.n - 1, n).round().astype(int) if span else np.arange(n)
    mode = mode or cfg["evaluate"]["mode"]
    columns: list[tuple[str, list[np.ndarray]]] = [
        ("input", [x for x in es.display_inputs(rows)]),
        ("target", [es.targets[i].permute(1, 2, 0).numpy() for i in rows]),
    ]
    for v, s in sample_models(cfg, stage):
        ckpt = lay.checkpoint(v, s)
        if not ckpt.is_file():
            raise ReportError(f"missing {ckpt}: {_cmd_hint(cfg, base, 'checkpoint', v, s)}")
        G = generator_from_checkpoint(ckpt)
        # in eval mode a frame's output does not depend on its batch: generate the grid's rows only;
        # otherwise (batch statistics, seeded dropout) every item up to the last row, one at a time, in order
        batches = (
            es.batches(len(rows), idx=rows) if mode == "eval" else es.batches(1, idx=range(int(rows[-1]) + 1))
        )
        with (
            torch.no_grad(),
            closing(generate_batches(G, batches, mode, int(cfg["seed"]), device="cpu")) as ys,
        ):
            outs = torch.cat([es.quantize_outputs(y) for y in ys]).permute(0, 2, 3, 1).numpy()
        label = "original" if v == ORIGINAL else v.replace("-match-", "\nmatch ")
        columns.append((label, list(outs) if mode == "eval" else [outs[i] for i in rows]))
        del G
    ncol = len(columns)
    fig = _figure(1.45 * ncol, 1.45 * n + 0.7)
    axes = fig.subplots(n, ncol, squeeze=False)
    for j, (label, imgs) in enumerate(columns):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(imgs[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=6)
    fig.suptitle(
        f"samples ({split} split, {stage if stage != pipeline.FINETUNED else 'fine-tuned'} variants, "
        f"mode {mode})",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, path)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path | str) -> Path:
    """Write the PNG atomically (a killed job never leaves a truncated figure)."""
    return atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format="png"))
