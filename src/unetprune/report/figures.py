"""The paper's figures, drawn from the tables and the checkpoints (matplotlib's Agg canvas,
no pyplot: no global state, no display needed).

* :func:`sensitivity_figure` — quality vs layer (outer → inner → outer, like the paper's
  Figure 1), one curve per ratio, the unpruned model as a dashed line, inner levels shaded;
* :func:`tradeoff_figure` — quality vs params / physical MACs / output-based MACs of every
  model, pruned (hollow) and fine-tuned (filled), inner/cut vs global baselines by marker;
* :func:`sample_grid` — the same evaluation inputs through every model, one column per model.
"""

from __future__ import annotations

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
from .tables import METRICS, ReportError, _cmd_hint

DPI = 120


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
    for i, r in enumerate(ratios):
        g = df[df.ratio == r].sort_values("position")
        ax.plot(
            [x[v] for v in g.layer],
            g.quality,
            marker="o",
            ms=4,
            lw=1.5,
            color=cmap(i / max(1, len(ratios) - 1)),
            label=f"ratio {r:g}",
        )
    full = df.quality_full.dropna()
    if len(full):
        ax.axhline(float(full.iloc[0]), color="black", ls="--", lw=1, label="unpruned")
    ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 10 else 0)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_xlabel("pruned layer (outer → inner → outer)")
    ax.set_ylabel(_metric_label(metric, df.fid_backend.iloc[0] if len(df) else None))
    ax.set_title(title or "per-layer sensitivity (one layer pruned at a time, no fine-tuning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


_MARKERS = {"none": "*", "inner": "o", "cut": "s", "global-uniform": "^", "global-threshold": "v"}
_COLORS = {
    "none": "black",
    "inner": "tab:blue",
    "cut": "tab:orange",
    "global-uniform": "tab:gray",
    "global-threshold": "tab:red",
}
_LABELS = {
    "none": "original",
    "inner": "inner pruning",
    "cut": "cut inner layers",
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
            g = g.sort_values(
                "stage", key=lambda c: c.map({ORIGINAL: 0, PRUNED: 0, FINETUNED: 1})
            )
            if len(g) > 1:
                ax.plot(g[col], g[metric], color=_COLORS[s], lw=0.8, alpha=0.6)
            for _, row in g.iterrows():
                filled = row.stage != pipeline.PRUNED
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
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or f"quality vs size ({METRICS[metric][0]})")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return _save(fig, path)


def sample_models(cfg: dict, stage: str) -> list[tuple[str, str]]:
    """(variant, stage) of the sample-grid columns: the original, then every variant at ``stage``."""
    return [(ORIGINAL, ORIGINAL)] + [(v, stage) for v in pipeline.all_variants(cfg)]


def sample_grid(
    cfg: dict, base: Path | str, path: Path | str, stage: str, split: str = "test", mode: str | None = None
) -> Path:
    """Rows = the first ``report.sample_images`` items of ``split``; columns = input, target, every model."""
    import torch
    from torch.utils.data import Subset

    from ..checkpoint import generator_from_checkpoint
    from ..data.aligned import AlignedDataset, to_uint8
    from ..translate import generate_split

    d = cfg["data"]
    size = int(d["crop_size"])
    root = Layout.from_config(cfg, base).data_root
    if not (root / split).is_dir():
        raise ReportError(
            f"missing {root / split}: the dataset split of the sample grid (made by the demo_data or "
            "fetch_data rule, or found at `data.root`)"
        )
    ds = AlignedDataset(
        root, split, d["direction"], load_size=max(size, int(d["load_size"])), crop_size=size, train=False
    )
    n = min(int(cfg["report"]["sample_images"]), len(ds))
    if n == 0:
        raise ReportError(f"split {root / split} has no images for the sample grid")
    items = Subset(ds, range(n))
    mode = mode or cfg["evaluate"]["mode"]
    columns: list[tuple[str, list[np.ndarray]]] = []
    outs_a = outs_b = None
    for v, s in sample_models(cfg, stage):
        ckpt = Layout.from_config(cfg, base).checkpoint(v, s)
        if not ckpt.is_file():
            raise ReportError(f"missing {ckpt}: {_cmd_hint(cfg, base, 'checkpoint', v, s)}")
        G = generator_from_checkpoint(ckpt)
        with torch.no_grad():
            triples = generate_split(G, items, mode, seed=int(cfg["seed"]), device="cpu")
        if outs_a is None:
            outs_a = [to_uint8(a) for a, _, _ in triples]
            outs_b = [to_uint8(b) for _, _, b in triples]
        label = "original" if v == ORIGINAL else v.replace("-match-", "\nmatch ")
        columns.append((label, [to_uint8(o) for _, o, _ in triples]))
        del G
    columns = [("input", outs_a), ("target", outs_b)] + columns
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
