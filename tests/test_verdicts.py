"""Verdicts rest on a distribution metric that a collapsed generator cannot win.

A copy of the tiny results tree (tests/conftest.py) gets one matched baseline replaced by a
generator that outputs the same image for every input (the per-pixel mean of the real test
images: the best constant under L1/L2, a "flat grey" model), scored through the real
Evaluator.  Whatever ``report.quality_metric`` says, the verdict never favours it, and every
table, metrics.json and the findings flag it as collapsed.
"""

from __future__ import annotations

import json
import math
import re
import shutil

import pandas as pd
import pytest
import torch

from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, Layout

VARIANT = "cut-k1"
CONSTANT = "global-threshold-match-cut-k1"  # the baseline replaced by a constant generator
OTHER = "global-uniform-match-cut-k1"  # its trained sibling baseline
METRIC_KEYS = ("fid", "kid", "miou", "l1", "psnr", "ssim")


class ConstantOutput(torch.nn.Module):
    """Wraps a trained generator (so the pipeline's checks and the complexity count accept it)
    but outputs one fixed image whatever the input."""

    def __init__(self, generator: torch.nn.Module, image: torch.Tensor):
        super().__init__()
        self.g = generator
        self.register_buffer("image", image)

    def forward(self, x):
        y = self.g(x)
        return self.image.expand(len(x), -1, -1, -1) + 0.0 * y


def _with(cfg: dict, **report) -> dict:
    return {**cfg, "report": {**cfg["report"], **report}}


@pytest.fixture(scope="module")
def constant_tree(results_tree, tmp_path_factory):
    """(cfg, base, config file, the constant model's eval JSON) of a copy of the tiny tree."""
    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.cli import main
    from unetprune.data.aligned import from_uint8
    from unetprune.evaluate import Evaluator

    cfg, src_base, cfg_file = results_tree
    root = tmp_path_factory.mktemp("constant-tree")
    base = root / "results"
    shutil.copytree(src_base, base)
    lay = Layout.from_config(cfg, base)
    ev = Evaluator(cfg, "test", cache_dir=lay.fid_cache, latency=False)
    mean_image = from_uint8(ev.eval_set.targets).mean(0, keepdim=True)  # (1, 3, H, W) in [-1, 1]
    g = ConstantOutput(generator_from_checkpoint(lay.checkpoint(CONSTANT, FINETUNED)), mean_image)
    r = ev.score(g, checkpoint=lay.checkpoint(CONSTANT, FINETUNED))
    r["experiment"] = cfg["experiment"]
    lay.eval_json(CONSTANT, FINETUNED).write_text(json.dumps(r, indent=2))
    assert main(["report", "--config", str(cfg_file), "--results", str(base)]) == 0
    return cfg, base, cfg_file, r


# ------------------------------------------------------------------------------------------
# the collapse check
# ------------------------------------------------------------------------------------------


def test_diversity_plugin_measures_output_spread(tiny_demo, tmp_path):
    from unetprune.config import load_config
    from unetprune.data.aligned import from_uint8
    from unetprune.evaluate import Evaluator
    from unetprune.metrics.plugins import DEFAULT_METRICS, METRICS, output_spread

    assert "diversity" in DEFAULT_METRICS and METRICS["diversity"].keys == ("diversity",)
    cfg = load_config(
        None,
        {
            "experiment": "div",
            "data": {"dataset": "demo", "crop_size": 32, "load_size": 32, "root": str(tiny_demo)},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 8}},
            "evaluate": {"fid_backend": "standin", "collapse_threshold": 0.5},
        },
    )
    assert load_config(None, {"experiment": "d"})["evaluate"]["collapse_threshold"] == 0.1  # the default
    ev = Evaluator(cfg, "test", cache_dir=tmp_path, latency=False, metrics=("diversity",))
    real = ev.eval_set.targets
    x = real.double() / 255
    assert output_spread(real) == pytest.approx(float(x.std(0, unbiased=False).mean()))
    assert output_spread(real[:1].expand(4, -1, -1, -1)) == 0.0

    class Zeros(torch.nn.Module):
        def forward(self, inp):
            return torch.zeros(len(inp), 3, 32, 32)

    const = ev.score(ConstantOutput(Zeros(), from_uint8(real).mean(0, keepdim=True)))["diversity"]
    assert const["ratio"] == 0.0 and const["collapsed"] is True and const["threshold"] == 0.5
    assert const["real_std"] == pytest.approx(output_spread(real)) and const["n_images"] == len(real)

    class Inputs(torch.nn.Module):  # the inputs themselves: as varied as colour label maps are
        def forward(self, inp):
            return inp

    d = ev.score(Inputs())["diversity"]
    spread = output_spread(ev.eval_set.inputs)
    assert d["ratio"] == pytest.approx(spread / output_spread(real))
    assert d["collapsed"] is (d["ratio"] < 0.5) and d["fake_std"] == pytest.approx(spread)


def test_every_evaluation_of_the_tree_has_the_collapse_check(results_tree, tiny_layout):
    from unetprune.report import main_table

    cfg, base, _ = results_tree
    main = main_table(cfg, base)
    for _, row in main.iterrows():
        div = json.loads(tiny_layout.eval_json(row.variant, row.stage).read_text())["diversity"]
        assert row.diversity == pytest.approx(div["ratio"]) and div["threshold"] == 0.1
        assert bool(row.collapsed) is (div["ratio"] < 0.1) is div["collapsed"]
    metrics = json.loads(tiny_layout.metrics_json.read_text())
    assert metrics[ORIGINAL]["collapsed"] is bool(main.collapsed.iloc[0])
    assert metrics[ORIGINAL]["diversity"] == pytest.approx(main.diversity.iloc[0])


# ------------------------------------------------------------------------------------------
# the acceptance test: a constant generator never wins
# ------------------------------------------------------------------------------------------


def test_constant_generator_is_flagged_collapsed_in_every_table(constant_tree):
    from unetprune.report import main_table

    cfg, base, _, r = constant_tree
    lay = Layout.from_config(cfg, base)
    assert r["diversity"]["ratio"] == 0.0 and r["diversity"]["collapsed"] is True
    main = main_table(cfg, base)
    row = main[(main.variant == CONSTANT) & (main.stage == FINETUNED)].iloc[0]
    assert bool(row.collapsed) is True and row.diversity == 0.0
    trained = main[(main.variant == VARIANT) & (main.stage == FINETUNED)].iloc[0]
    assert bool(trained.collapsed) is False and trained.diversity > 0.1
    # the written tables: main (csv + md), comparison (csv + md), metrics.json
    csv = pd.read_csv(lay.table("main"))
    c = csv[(csv.variant == CONSTANT) & (csv.stage == FINETUNED)].iloc[0]
    assert bool(c.collapsed) is True and c.diversity == 0.0
    md = next(
        x
        for x in lay.table("main", "md").read_text().splitlines()
        if x.startswith(f"| {CONSTANT} ") and f"| {FINETUNED} " in x
    )
    assert re.search(r"\|\s*\*\*yes\*\*\s*\|", md)
    md_trained = next(
        x
        for x in lay.table("main", "md").read_text().splitlines()
        if x.startswith(f"| {VARIANT} ") and f"| {FINETUNED} " in x
    )
    assert "**yes**" not in md_trained and re.search(r"\|\s*no\s*\|", md_trained)
    comp = pd.read_csv(lay.table("comparison"))
    c = comp[comp.baseline == CONSTANT].iloc[0]
    assert bool(c.baseline_collapsed) is True and bool(c.variant_collapsed) is False
    assert c.winner == VARIANT
    assert "**yes**" in next(
        x
        for x in lay.table("comparison", "md").read_text().splitlines()
        if re.search(rf"\|\s*{CONSTANT}\s*\|", x)
    )
    metrics = json.loads(lay.metrics_json.read_text())
    assert metrics[f"{CONSTANT}/{FINETUNED}"]["collapsed"] is True
    assert metrics[f"{CONSTANT}/{FINETUNED}"]["diversity"] == 0.0
    assert metrics[f"{VARIANT}/{FINETUNED}"]["collapsed"] is False


@pytest.mark.parametrize("metric", METRIC_KEYS)
def test_verdict_never_favours_the_constant_generator(constant_tree, metric):
    from unetprune.report import comparison_findings, comparison_table, main_table

    cfg, base, _, _ = constant_tree
    cfg = _with(cfg, quality_metric=metric)
    main = main_table(cfg, base)
    comp = comparison_table(cfg, main)
    r = comp[comp.baseline == CONSTANT].iloc[0]
    assert r.metric == metric and r.winner == VARIANT != CONSTANT
    assert bool(r.baseline_collapsed) is True and bool(r.variant_collapsed) is False
    # decided by the metric when it prefers the trained model beyond the noise, by the collapse check
    # otherwise (a difference within the noise decides nothing)
    within_noise = r.resolved is not None and not r.resolved
    assert r.decided_by == ("collapse" if r.metric_winner == CONSTANT or within_noise else metric)
    verdict, lines = comparison_findings(comp, {CONSTANT: 0.0})
    line = next(x for x in lines if x.startswith(f"{VARIANT} vs {CONSTANT} "))
    assert f"**{VARIANT} wins**" in line and f"**{CONSTANT} wins**" not in line
    assert f"{CONSTANT} is **collapsed** (output diversity 0 < 0.1 of the real images')" in line
    assert (
        f"Collapsed (output diversity below 0.1 of the real images', so never a winner): {CONSTANT}"
        in verdict
    )


def test_paired_metrics_favouring_the_constant_cannot_make_it_win(constant_tree):
    """Even when the constant model scores best on every metric, it does not win."""
    from unetprune.report import comparison_findings, comparison_table, main_table
    from unetprune.report import load_all_evals

    cfg, base, _, _ = constant_tree
    evals = load_all_evals(cfg, base)
    for e in evals.values():  # the collapse rule on the point values (the noise: tests/test_noise_report.py)
        e.pop("noise", None)
    const = json.loads(json.dumps(evals[(CONSTANT, FINETUNED)]))
    const["fid"]["value"], const["kid"]["mean"], const["segmentation"]["miou"] = 0.0, 0.0, 1.0
    const["l1"], const["psnr"], const["ssim"] = 0.0, 99.0, 1.0
    evals[(CONSTANT, FINETUNED)] = const
    for metric in METRIC_KEYS:
        c = _with(cfg, quality_metric=metric)
        comp = comparison_table(c, main_table(c, base, evals=evals))
        r = comp[comp.baseline == CONSTANT].iloc[0]
        assert r.metric_winner == CONSTANT and r.winner == VARIANT and r.decided_by == "collapse"
        assert r.disagree == ""  # every metric prefers the constant model: no disagreement
        other = comp[comp.baseline == OTHER].iloc[0]
        assert other.decided_by == metric and other.winner == other.metric_winner
        _, lines = comparison_findings(comp, {CONSTANT: 0.0})
        line = next(x for x in lines if x.startswith(f"{VARIANT} vs {CONSTANT} "))
        label = {"fid": "FID", "kid": "KID", "miou": "mIoU", "l1": "L1", "psnr": "PSNR (dB)", "ssim": "SSIM"}[
            metric
        ]
        assert f"**{VARIANT} wins** by the collapse check ({label} favours {CONSTANT} by" in line
    # both collapsed: nobody wins
    trained = json.loads(json.dumps(evals[(VARIANT, FINETUNED)]))
    trained["diversity"]["ratio"] = 0.05
    evals[(VARIANT, FINETUNED)] = trained
    comp = comparison_table(cfg, main_table(cfg, base, evals=evals))
    both = comp[comp.baseline == CONSTANT].iloc[0]
    assert both.winner == "none" and bool(both.variant_collapsed) and bool(both.baseline_collapsed)
    # and a collapsed variant loses to an uncollapsed baseline that the metric dislikes
    lost = comp[comp.baseline == OTHER].iloc[0]
    assert lost.winner == OTHER and bool(lost.variant_collapsed) is True


def test_threshold_is_the_config_key(constant_tree):
    from unetprune.report import comparison_table, main_table

    cfg, base, _, _ = constant_tree
    main = main_table(cfg, base)
    trained = float(main[(main.variant == VARIANT) & (main.stage == FINETUNED)].diversity.iloc[0])
    high = {**cfg, "evaluate": {**cfg["evaluate"], "collapse_threshold": trained + 0.01}}
    m = main_table(high, base)
    assert bool(m[(m.variant == VARIANT) & (m.stage == FINETUNED)].collapsed.iloc[0]) is True
    off = {**cfg, "evaluate": {**cfg["evaluate"], "collapse_threshold": 0.0}}
    m = main_table(off, base)
    assert not m.collapsed.astype(bool).any()
    r = comparison_table(off, m)
    assert (r.decided_by != "collapse").all()


def test_report_md_names_the_metric_and_flags_the_constant(constant_tree):
    from unetprune.cli import main as cli
    from unetprune.report import all_tables

    cfg, base, cfg_file, _ = constant_tree
    lay = Layout.from_config(cfg, base)
    text = lay.report_md.read_text()
    # the default verdict metric: FID named with its backend
    assert cfg["report"]["quality_metric"] == "fid"
    assert "on FID (`standin` backend), the sensitivity curve" in text
    assert "comparisons on FID (`standin` backend) after fine-tuning" in text
    assert "*These findings rest on FID, computed with the `standin` backend" in text
    line = next(x for x in text.splitlines() if x.startswith(f"* {VARIANT} vs {CONSTANT} "))
    assert f"**{VARIANT} wins**" in line and f"{CONSTANT} is **collapsed**" in line
    assert "**Collapse check**" in text and "`evaluate.collapse_threshold` = 0.1" in text
    # L1 as the verdict metric (the setting): the constant still does not win
    assert (
        cli(
            ["report", "--config", str(cfg_file), "--results", str(base), "--set", "report.quality_metric=l1"]
        )
        == 0
    )
    text = lay.report_md.read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"* {VARIANT} vs {CONSTANT} "))
    assert f"**{VARIANT} wins**" in line and f"**{CONSTANT} wins**" not in line
    assert "on L1, the sensitivity curve" in text and "comparisons on L1 after fine-tuning" in text
    assert "a paired metric, which rewards predicting the mean image" in text
    t = all_tables(_with(cfg, quality_metric="l1"), base)
    comp = t["comparison"]
    assert (comp[comp.baseline == CONSTANT].winner == VARIANT).all()
    # every comparison line says which other metrics disagree (or that they agree)
    for _, r in comp.iterrows():
        ln = next(x for x in text.splitlines() if x.startswith(f"* {r.variant} vs {r.baseline} "))
        if r.disagree:
            assert "disagree with L1" in ln
        elif r.agree:
            assert " agree." in ln
    assert cli(["report", "--config", str(cfg_file), "--results", str(base)]) == 0  # back to the default


# ------------------------------------------------------------------------------------------
# disagreement and the no-effect rule
# ------------------------------------------------------------------------------------------


def test_findings_state_where_paired_metrics_disagree(results_tree):
    from unetprune.report import comparison_findings, comparison_table, main_table
    from unetprune.report import load_all_evals

    cfg, base, _ = results_tree
    evals = load_all_evals(cfg, base)
    for e in evals.values():  # disagreement on the point values (beyond the noise: test_noise_report.py)
        e.pop("noise", None)
    v = evals[(VARIANT, FINETUNED)]
    b = json.loads(json.dumps(evals[(OTHER, FINETUNED)]))
    # FID, KID and mIoU prefer the variant; L1, PSNR and SSIM prefer the (uncollapsed) baseline
    b["fid"]["value"] = v["fid"]["value"] + 1.0
    b["kid"]["mean"] = v["kid"]["mean"] + 0.01
    b["segmentation"]["miou"] = v["segmentation"]["miou"] - 0.1
    b["l1"], b["psnr"], b["ssim"] = v["l1"] - 0.01, v["psnr"] + 1.0, v["ssim"] + 0.1
    b["diversity"]["ratio"] = 0.9
    evals[(OTHER, FINETUNED)] = b
    comp = comparison_table(cfg, main_table(cfg, base, evals=evals))
    r = comp[comp.baseline == OTHER].iloc[0]
    assert r.winner == r.metric_winner == VARIANT and r.decided_by == "fid"
    assert r.agree == "kid, miou" and r.disagree == "l1, psnr, ssim"
    verdict, lines = comparison_findings(comp)
    line = next(x for x in lines if x.startswith(f"{VARIANT} vs {OTHER} "))
    assert f"L1, PSNR and SSIM disagree with FID (favouring {OTHER}); KID and mIoU agree." in line
    assert "Other metrics disagree with FID:" in verdict and "L1 in " in verdict
    assert "paired metrics that reward a mean prediction; the verdict rests on FID" in verdict


def test_negative_degradation_is_no_effect_not_support():
    from unetprune.report import sensitivity_findings
    from unetprune.report import pattern_finding

    assert pattern_finding(-0.2, -0.1) == "no effect"  # pruning improved both: no effect
    assert pattern_finding(0.0, 0.0) == "no effect"
    assert pattern_finding(-0.5, 0.3) == "support"  # inner free, outer costly: the pattern
    assert pattern_finding(-0.5, -0.4) == "no effect"  # both free: nothing to compare
    assert pattern_finding(0.3, 0.1) == "against" and pattern_finding(0.2, 0.2) == "against"
    assert pattern_finding(0.1, -0.3) == "against" and pattern_finding(float("nan"), 1.0) is None

    def summ(inner, outer, l1=None):
        df = pd.DataFrame(
            {
                "ratio": [0.3, 0.7][: len(inner)],
                "inner_layers": "down5, up5",
                "outer_layers": "down1, up2",
                "n_inner": 2,
                "n_outer": 2,
                "mean_degradation_inner": inner,
                "mean_degradation_outer": outer,
                "difference": [o - i for i, o in zip(inner, outer)],
                "mean_degradation_pct_inner": inner,
                "mean_degradation_pct_outer": outer,
                "finding": [pattern_finding(i, o) for i, o in zip(inner, outer)],
                "findings_by_metric": l1 or ["", ""][: len(inner)],
            }
        )
        df["inner_less_sensitive"] = df.finding == "support"
        df.attrs.update(metric="fid", fid_backend="standin")
        return df

    v, lines = sensitivity_findings(summ([-0.2, -0.3], [-0.1, -0.05]))
    assert v.startswith("**No**: on FID (`standin` backend)") and "0 of 2" in v
    assert "At ratio(s) 0.3, 0.7 pruning did not worsen FID" in v and "which is not support" in v
    assert all("no effect — pruning changed nothing for the worse" in x for x in lines)
    v, lines = sensitivity_findings(
        summ([-0.2, 0.5], [0.4, 0.3], l1=["l1: no effect; ssim: support", "l1: against; ssim: against"])
    )
    assert v.startswith("**Partly**") and "1 of 2 swept ratios (0.3)" in v
    assert "L1 disagrees (L1: no effect); SSIM agrees." in lines[0]
    assert lines[1].endswith("L1 and SSIM agree.")
    assert "Other metrics disagree with FID: L1 at ratio(s) 0.3." in v


def test_sensitivity_summary_compares_every_metric(results_tree):
    from unetprune.report import sensitivity_summary, sensitivity_table
    from unetprune.report import degradation, pattern_finding

    cfg, base, _ = results_tree
    df = sensitivity_table(cfg, base)
    s = sensitivity_summary(df).iloc[0]

    def noise(m):
        """std of the inner and outer mean degradations and of their difference, re-derived here
        (NaN when the sweep recorded no noise)."""
        std = df[f"{m}_std"]
        full = float(df[f"full_{m}_std"].iloc[0])
        n_i, n_o = int(df.inner.sum()), int((~df.inner).sum())
        si = math.sqrt(sum(x * x for x, i in zip(std, df.inner) if i)) / n_i
        so = math.sqrt(sum(x * x for x, i in zip(std, df.inner) if not i)) / n_o
        return math.hypot(si, full), math.hypot(so, full), math.hypot(si, so)

    assert s.finding_point == pattern_finding(s.mean_degradation_inner, s.mean_degradation_outer)
    assert s.finding == pattern_finding(s.mean_degradation_inner, s.mean_degradation_outer, *noise("fid"))
    assert s.inner_less_sensitive == {"support": True, "against": False, "no effect": False}.get(s.finding)
    by = dict(p.split(": ") for p in s.findings_by_metric.split("; "))
    assert set(by) == {"kid", "miou", "l1", "psnr", "ssim"}
    for m, f in by.items():
        deg = [degradation(m, x, full) for x, full in zip(df[m], df[f"full_{m}"])]
        inner = sum(d for d, i in zip(deg, df.inner) if i) / df.inner.sum()
        outer = sum(d for d, i in zip(deg, df.inner) if not i) / (~df.inner).sum()
        assert f == pattern_finding(inner, outer, *noise(m)), m
    resolved = s.finding != "not resolved"
    assert s.disagree == ", ".join(
        m for m, f in by.items() if resolved and f not in (s.finding, "not resolved")
    )
    assert math.isfinite(s.mean_degradation_inner)
    lay = Layout.from_config(cfg, base)
    assert "full_fid" in pd.read_csv(lay.table("sensitivity")).columns
    assert "full_fid" not in lay.table("sensitivity", "md").read_text()
    assert pipeline.final_stage(cfg) == FINETUNED


def test_output_spread_is_exact_on_uint8():
    """Exact sums: a constant split spreads by exactly 0, half black / half white by exactly
    0.5, across chunk boundaries (300 images, chunks of 64); equal to float64 std elsewhere."""
    from unetprune.metrics.plugins import output_spread

    const = torch.full((300, 3, 8, 8), 17, dtype=torch.uint8)
    assert output_spread(const) == 0.0
    bw = torch.cat(
        [torch.zeros(150, 3, 8, 8, dtype=torch.uint8), torch.full((150, 3, 8, 8), 255, dtype=torch.uint8)]
    )
    assert output_spread(bw) == 0.5
    x = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert output_spread(x) == pytest.approx(
        float((x.double() / 255).std(0, unbiased=False).mean()), rel=1e-12
    )
