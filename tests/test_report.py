"""`unetprune report`: the tables, figures and report.md of a tiny but REAL experiment.

The run-wide fixture ``results_tree`` (tests/conftest.py) runs the actual pipeline functions
on a 32 px demo dataset: train the original, sweep every layer, prune the variants and the
matched global baselines with `unetprune prune`, fine-tune, evaluate every model, then
`unetprune report`.  Every path is asked of :class:`unetprune.layout.Layout`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED, Layout


def _eval(lay: Layout, model: str, stage: str) -> dict:
    return json.loads(lay.eval_json(model, stage).read_text())


def _rel(lay: Layout, path: Path) -> str:
    """``path`` as report.md links it: relative to the experiment folder."""
    return path.relative_to(lay.root).as_posix()


# ------------------------------------------------------------------------------------------


def test_main_table_has_every_model_and_stage_with_the_json_values(results_tree, tiny_layout):
    from unetprune.report import main_table
    from unetprune.report import MAIN_COLUMNS

    cfg, base, _ = results_tree
    lay = tiny_layout
    df = main_table(cfg, base)
    assert list(df.columns) == MAIN_COLUMNS
    variants = list(pipeline.all_variants(cfg))
    assert len(variants) == 6  # inner, cut, 2 baselines each
    expected = [(ORIGINAL, ORIGINAL)] + [(v, s) for v in variants for s in (PRUNED, FINETUNED)]
    assert list(zip(df.variant, df.stage)) == expected == pipeline.models(cfg)
    assert set(df.group) == {"original", "primary", "baseline"}
    for _, row in df.iterrows():
        r = _eval(lay, row.variant, row.stage)
        assert row.params == r["complexity"]["params"]
        assert row.macs_physical == r["complexity"]["macs_physical"]
        assert row.macs_output == r["complexity"]["macs_output"]
        assert row.fid == pytest.approx(r["fid"]["value"]) and row.fid_backend == "standin"
        assert row.kid == pytest.approx(r["kid"]["mean"]) and row.l1 == pytest.approx(r["l1"])
        assert row.psnr == pytest.approx(r["psnr"]) and row.ssim == pytest.approx(r["ssim"])
        assert row.miou == pytest.approx(r["segmentation"]["miou"])
        assert row.diversity == pytest.approx(r["diversity"]["ratio"])
        noise = (r.get("noise") or {}).get("metrics") or {}
        for m, get in (("fid", "fid"), ("l1", "l1"), ("kid", "kid"), ("ssim", "ssim")):
            std = (noise.get(get) or {}).get("std")
            if std is None:  # an evaluation without a noise block (or without bootstrap): n/a
                assert math.isnan(row[f"{m}_std"]), m
            else:
                assert row[f"{m}_std"] == pytest.approx(std), m
                assert row[f"{m}_ci95_lo"] == pytest.approx(noise[get]["ci95"][0]), m
        assert bool(row.collapsed) is (r["diversity"]["ratio"] < cfg["evaluate"]["collapse_threshold"])
        # one latency per architecture: the lower median of the variant's stages
        medians = [
            _eval(lay, row.variant, st)["complexity"]["latency"][0]["median_ms"]
            for st in df[df.variant == row.variant].stage
        ]
        assert row.latency_ms == pytest.approx(min(medians)) and row.latency_ms > 0
        assert row.latency_ms <= r["complexity"]["latency"][0]["median_ms"]
    base_rows = df[df.group == "baseline"]
    assert (base_rows.matched_to != "").all() and base_rows.budget_gap.abs().max() <= 0.0101
    assert df[df.group != "baseline"].budget_gap.isna().all()
    orig = df.iloc[0]
    assert orig.params_fraction == 1.0
    cut = df[(df.variant == "cut-k1") & (df.stage == PRUNED)].iloc[0]
    assert cut.params < orig.params and cut.params_fraction == pytest.approx(cut.params / orig.params)
    # the written table is the same
    csv = pd.read_csv(lay.table("main"))
    assert len(csv) == len(df) and list(csv.params) == list(df.params)
    md = lay.table("main", "md").read_text()
    assert f"{int(orig.params):,}" in md and "global-threshold-match-cut-k1" in md


def test_dvc_metrics_and_plots_files_hold_the_table_numbers(results_tree, tiny_layout):
    from unetprune.report import main_table, sensitivity_table

    cfg, base, _ = results_tree
    main = main_table(cfg, base)
    metrics = json.loads(tiny_layout.metrics_json.read_text())
    # keyed like the MLflow runs: the original by its name, a variant by name/stage
    assert list(metrics) == [ORIGINAL] + [f"{v}/{s}" for v, s in pipeline.models(cfg)[1:]]
    for (v, s), key in zip(zip(main.variant, main.stage), metrics):
        row = main[(main.variant == v) & (main.stage == s)].iloc[0]
        assert metrics[key]["params"] == row.params and metrics[key]["fid"] == pytest.approx(row.fid)
    sens = sensitivity_table(cfg, base)
    plot = pd.read_csv(tiny_layout.plot("sensitivity"))
    assert list(plot.columns) == ["layer", "ratio", "quality"]
    assert list(plot.layer) == list(sens.layer) and np.allclose(plot.quality, sens.quality)
    assert set(plot.ratio) == {"r0.5"}


def test_comparison_table_pairs_each_variant_with_its_baselines(results_tree, tiny_layout):
    from unetprune.report import comparison_table, main_table

    cfg, base, _ = results_tree
    main = main_table(cfg, base)
    comp = comparison_table(cfg, main)
    assert len(comp) == 4 and set(comp.stage) == {FINETUNED}
    for _, r in comp.iterrows():
        assert r.baseline.endswith(f"-match-{r.variant}")
        pv = _eval(tiny_layout, r.variant, FINETUNED)["fid"]["value"]
        bv = _eval(tiny_layout, r.baseline, FINETUNED)["fid"]["value"]
        assert r.variant_value == pytest.approx(pv) and r.baseline_value == pytest.approx(bv)
        assert r.advantage == pytest.approx(bv - pv)  # FID: lower is better
        assert r.metric_winner == (r.variant if pv < bv else r.baseline if bv < pv else "tie")
        v = _eval(tiny_layout, r.variant, FINETUNED)
        b = _eval(tiny_layout, r.baseline, FINETUNED)

        def std(e, m):
            x = (((e.get("noise") or {}).get("metrics") or {}).get(m) or {}).get("std")
            return float("nan") if x is None else x

        sigma = math.hypot(std(v, "fid"), std(b, "fid"))  # NaN without a noise block
        if math.isfinite(sigma):
            assert r.difference_std == pytest.approx(sigma) and bool(r.resolved) is (abs(bv - pv) > 2 * sigma)
        else:
            assert r.resolved is None
        assert r.winner == (r.metric_winner if r.resolved is None or r.resolved else "not resolved")
        assert r.metric == "fid" and r.decided_by == "fid"
        assert not r.variant_collapsed and not r.baseline_collapsed
        # every other metric agrees, disagrees or is within its noise (none missing in this tree)
        split = {k: (r[k].split(", ") if r[k] else []) for k in ("agree", "disagree", "unresolved")}
        others = sorted(m for ms in split.values() for m in ms)
        assert set(others) <= {"kid", "miou", "l1", "psnr", "ssim"}
        for m in others:
            get = {"kid": lambda e: e["kid"]["mean"], "miou": lambda e: e["segmentation"]["miou"]}.get(
                m, lambda e, m=m: e[m]
            )
            lower = m in ("kid", "l1")
            prefers_variant = get(v) < get(b) if lower else get(v) > get(b)
            s_m = math.hypot(std(v, m), std(b, m))
            if m in split["unresolved"]:
                assert abs(get(v) - get(b)) <= 2 * s_m, m
            else:
                assert not abs(get(v) - get(b)) <= 2 * s_m, m  # beyond the noise, or the noise unknown
                assert (m in split["agree"]) is (prefers_variant == (r.metric_winner == r.variant)), m


def test_sensitivity_table_is_layers_by_ratios(results_tree, tiny_layout):
    from unetprune.report import sensitivity_summary, sensitivity_table

    cfg, base, _ = results_tree
    df = sensitivity_table(cfg, base)
    layers = pipeline.config_layers(cfg)
    assert len(df) == len(layers) * len(cfg["sensitivity"]["ratios"])
    assert list(df.layer) == layers  # outer -> inner -> outer
    assert set(df[df.inner].layer) == {"down5", "up5"}  # the widest levels of this ngf=16 model
    for _, row in df.iterrows():
        d = json.loads(tiny_layout.sensitivity_json(row.layer).read_text())
        assert row.fid == pytest.approx(d["metrics"][0]["fid"]) and row.width == d["widths"][0]
        assert row.degradation == pytest.approx(d["metrics"][0]["fid"] - d["metrics_full"]["fid"])
        assert row.fid_backend == d["fid_backend"] == "standin"
    s = sensitivity_summary(df)
    assert len(s) == 1
    assert s.mean_degradation_inner[0] == pytest.approx(df[df.inner].degradation.mean())
    assert s.mean_degradation_outer[0] == pytest.approx(df[~df.inner].degradation.mean())
    assert s.inner_less_sensitive[0] == {"support": True, "against": False, "no effect": False}.get(
        s.finding[0]
    )
    assert s.finding_point[0] == (
        "support"
        if max(s.mean_degradation_outer[0], 0) > max(s.mean_degradation_inner[0], 0)
        else "no effect"
        if max(s.mean_degradation_outer[0], s.mean_degradation_inner[0]) <= 0
        else "against"
    )
    matrix = pd.read_csv(tiny_layout.table("sensitivity_matrix"))
    assert list(matrix.layer) == layers and "r=0.5" in matrix.columns


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    return np.asarray(Image.open(path).convert("RGB"))


def test_figures_are_real_pngs(results_tree, tiny_layout):
    cfg, _base, _ = results_tree
    for name in ("sensitivity", "tradeoff", "learning_curve"):
        a = _png(tiny_layout.figure(name))
        assert a.shape[0] > 300 and a.shape[1] > 500 and a.std() > 10
    s = _png(tiny_layout.figure("samples"))
    p = _png(tiny_layout.figure("samples_pruned"))
    n_cols = 2 + 1 + len(pipeline.all_variants(cfg))  # input, target, original, every variant
    assert s.shape == p.shape and s.shape[1] > s.shape[0] * (n_cols / cfg["report"]["sample_images"]) * 0.7
    assert not np.array_equal(s, p)  # fine-tuned outputs differ from the pruned ones


def test_sample_grid_uses_the_same_inputs_for_every_model(results_tree, tiny_layout, tmp_path, monkeypatch):
    """Every model column of the grid is generated from the same input images (the split's
    first `report.sample_images` items), which are also the grid's input column."""
    import unetprune.translate as translate
    from unetprune.data.aligned import AlignedDataset
    from unetprune.report.figures import sample_grid, sample_models

    cfg, base, _ = results_tree
    cols = sample_models(cfg, FINETUNED)
    assert cols[0] == (ORIGINAL, ORIGINAL) and len(cols) == 1 + len(pipeline.all_variants(cfg))
    assert all(s == FINETUNED for _, s in cols[1:])

    calls = []
    real = translate.generate_batches

    def recording(G, batches, *args, **kwargs):
        xs, ys = [], []
        for x in batches:
            xs.append(x)
        for y in real(G, iter(xs), *args, **kwargs):
            ys.append(y.detach().clone())
            yield y
        calls.append(list(zip(xs, ys)))

    monkeypatch.setattr(translate, "generate_batches", recording)
    out = sample_grid(cfg, base, tmp_path / "grid.png", FINETUNED)
    assert out.is_file() and len(calls) == len(cols)  # one generation per model column
    n = cfg["report"]["sample_images"]
    d = cfg["data"]
    ds = AlignedDataset(
        tiny_layout.data_root,
        "test",
        d["direction"],
        load_size=d["load_size"],
        crop_size=d["crop_size"],
        train=False,
    )
    expected = [ds[i]["A"] for i in range(n)]
    for pairs in calls:
        assert len(pairs) == n
        assert all(torch.equal(x[0], e) for (x, _), e in zip(pairs, expected))
    # ... and the models really differ, so identical inputs are what makes the columns comparable
    outs = [torch.cat([y for _, y in p]) for p in calls]
    assert not torch.equal(outs[0], outs[1]) and outs[0].shape == outs[-1].shape


def test_report_md_states_findings_from_the_data_and_assumptions(results_tree, tiny_layout):
    from unetprune.report import all_tables

    cfg, base, _ = results_tree
    lay = tiny_layout
    text = lay.report_md.read_text()
    t = all_tables(cfg, base)
    s = t["sensitivity_summary"].iloc[0]
    verdict = {"support": "**Yes**", "not resolved": "**Not resolved at this noise level**"}.get(
        s.finding, "**No**"
    )
    assert s.finding in ("support", "against", "no effect", "not resolved")
    assert f"{verdict}: on FID (`standin` backend), the sensitivity curve" in text
    assert f"degrades FID by {s.mean_degradation_inner:+.4g} on average" in text
    assert f"one outer layer by {s.mean_degradation_outer:+.4g}" in text
    assert "(down5, up5)" in text
    comp = t["comparison"]
    wins = int((comp.winner == comp.variant).sum())
    assert (
        f"beat their matched global baselines in {wins} of 4 comparisons on FID (`standin` backend) after "
        "fine-tuning"
    ) in text
    assert "*These findings rest on FID, computed with the `standin` backend" in text
    for _, r in comp.iterrows():
        line = next(x for x in text.splitlines() if x.startswith(f"* {r.variant} vs {r.baseline} "))
        if math.isfinite(r.difference_std):  # the evaluations recorded their noise
            assert (
                f"FID {r.variant_value:.4g} ± {r.variant_std:.2g} vs {r.baseline_value:.4g} ± "
                f"{r.baseline_std:.2g}"
            ) in line
            assert bool(r.resolved) is (abs(r.advantage) > 2 * r.difference_std)
            where = "beyond" if r.resolved else "within"
            assert f"{where} 2σ = {2 * r.difference_std:.3g}" in line
        else:
            assert (
                f"FID {r.variant_value:.4g} vs {r.baseline_value:.4g}" in line
                and "noise level unknown" in line
            )
        if r.winner == "not resolved":
            assert (
                f"**not resolved at this noise level**: FID favours {r.metric_winner} by "
                f"{abs(r.advantage):.4g}"
            ) in line
        else:
            assert f"**{r.winner} wins** by {abs(r.advantage):.4g}" in line
        assert not r.variant_collapsed and not r.baseline_collapsed and r.decided_by == "fid"
        if r.disagree:  # the other metrics that prefer the other model are named
            assert "disagree with FID" in line
        elif r.agree:
            assert " agree." in line
        if r.unresolved:  # ... and those within their noise
            names = {"kid": "KID", "miou": "mIoU", "l1": "L1", "psnr": "PSNR", "ssim": "SSIM"}
            within = [names[m] for m in r.unresolved.split(", ")]
            listed = within[0] if len(within) == 1 else ", ".join(within[:-1]) + " and " + within[-1]
            assert f" Within the noise on {listed}." in line
        if r.winner == "not resolved":  # an unresolved verdict carries its power statement
            assert f" Power: the difference {r.advantage:+.3g} ± {r.difference_std:.2g} is within 2σ" in line
        assert r.disagree or r.agree or r.unresolved
        assert f"{r.variant_budget:,} vs {r.baseline_budget:,} (baseline {100 * r.budget_gap:+.2f}%)" in line
    for needle in (
        "## Assumptions",
        "**Filter importance**: `l1`",
        "**Inner levels**: level(s) 5",
        "**Cut inner layers**",
        "matched to the **params**",
        "within 1%",
        "**Fine-tuning**: every pruned model",
        "1 + 0 (linear decay) epochs",
        "**Evaluation mode**: `train_bn`",
        "**FID backend**: `standin`",
        "**relative only**",
        "**MAC conventions**",
        "**Latency**: CPU, eager, batch 1",
        "**Bias mode**: `paper`",
        "**Verdict metric of the figures and findings** (`report.quality_metric`): FID (`standin` backend)",
        "**Collapse check**",
        f"(`{_rel(lay, lay.original_dir)}/`)",  # what was run: the original's folder
        f"({_rel(lay, lay.table('main'))})",
        "| variant ",
        "| layer ",
    ):
        assert needle in text, needle
    for name in lay.REPORT_FIGURES + ("samples_pruned", "learning_curve"):
        assert f"]({_rel(lay, lay.figure(name))})" in text, name
    # the learning curve of the original (1 epoch in the tiny tree) and the noise of every number
    log = json.loads(lay.train_log(ORIGINAL).read_text())
    curve = log["eval"]["curve"]
    assert [c["epoch"] for c in curve] == [0, 1] and curve[-1]["score"] == log["eval"]["l1_final"]
    assert "## Training of the original" in text
    assert (
        f"Learning curve, the trainer's check (mean |G(A) − B| in [−1, 1] units on 2 `test` images, mode "
        f"`train_bn`; lower is better): {curve[0]['score']:.4g} before training → {curve[1]['score']:.4g} after "
        "1 epochs"
    ) in text
    assert f"The generator's weights moved {log['weights']['rel_l2']:.3g} (relative L2" in text
    lc = pd.read_csv(lay.table("learning_curve"))
    assert lc.epoch.tolist() == [0, 1] and lc.check.tolist() == pytest.approx([c["score"] for c in curve])
    assert "**Noise and significance**" in text
    main_md = lay.table("main", "md").read_text()
    assert " ± " in main_md and "fid_std" not in main_md
    csv = pd.read_csv(lay.table("main"))
    assert {"fid_std", "fid_ci95_lo", "fid_ci95_hi", "l1_std", "noise_seeds"} <= set(csv.columns)
    # the decisions are cited from the repository's own docs, never from a file users lack
    assert "docs/method.md#decisions-where-the-paper-is-silent" in text
    assert "unetprune repository" in text
    for absent in ("PAPER" + ".md", "DESIGN" + ".md", "../" + "shared", "trained`", "baseline/"):
        assert absent not in text, absent


def test_findings_wording_follows_the_numbers():
    from unetprune.report import comparison_findings, sensitivity_findings

    def summ(inner, outer):
        df = pd.DataFrame(
            {
                "ratio": [0.3, 0.7],
                "inner_layers": ["down5, up5"] * 2,
                "outer_layers": ["down1"] * 2,
                "n_inner": [2, 2],
                "n_outer": [1, 1],
                "mean_degradation_inner": inner,
                "mean_degradation_outer": outer,
                "difference": np.subtract(outer, inner),
                "mean_degradation_pct_inner": [1.0, 1.0],
                "mean_degradation_pct_outer": [2.0, 2.0],
                "inner_less_sensitive": [a < b for a, b in zip(inner, outer)],
            }
        )
        df.attrs["metric"] = "fid"
        return df

    assert sensitivity_findings(summ([0.1, 0.2], [1.0, 2.0]))[0].startswith("**Yes**")
    assert sensitivity_findings(summ([3.0, 4.0], [1.0, 2.0]))[0].startswith("**No**")
    v, lines = sensitivity_findings(summ([0.1, 4.0], [1.0, 2.0]))
    assert v.startswith("**Partly**: on FID,") and "1 of 2" in v and "(0.3)" in v and len(lines) == 2
    comp = pd.DataFrame(
        [
            {
                "variant": "cut-k2",
                "baseline": "global-uniform-match-cut-k2",
                "stage": FINETUNED,
                "metric": "psnr",
                "better": "higher",
                "variant_value": 20.0,
                "baseline_value": 22.0,
                "advantage": -2.0,
                "advantage_pct": -9.09,
                "winner": "global-uniform-match-cut-k2",
                "budget_metric": "params",
                "variant_budget": 1000,
                "baseline_budget": 1005,
                "budget_gap": 0.005,
            }
        ]
    )
    comp.attrs.update(metric="psnr", stage=FINETUNED)
    v, lines = comparison_findings(comp)
    assert v.startswith("**No**") and "0 of 1" in v and "at most 0.50%" in v
    assert "**global-uniform-match-cut-k2 wins** by 2" in lines[0] and "1,000 vs 1,005" in lines[0]


def test_mixed_fid_backends_are_refused(results_tree, tiny_layout):
    from unetprune.report import ReportError, main_table
    from unetprune.report import load_all_evals

    cfg, base, _ = results_tree
    evals = load_all_evals(cfg, base)
    bad = json.loads(json.dumps(evals[("cut-k1", FINETUNED)]))
    bad["fid"]["backend"] = "inception-v3-compat"
    bad["fid"]["extractor"]["weights_sha256"] = "f" * 64
    evals[("cut-k1", FINETUNED)] = bad
    name = re.escape(tiny_layout.eval_json("cut-k1", FINETUNED).name)
    with pytest.raises(ReportError, match=f"different backends.*{name}"):
        main_table(cfg, base, evals=evals)


def test_missing_inputs_name_the_file_and_the_command(results_tree, tiny_layout, tmp_path):
    from unetprune.cli import main
    from unetprune.report import ReportError, main_table, sensitivity_table

    cfg, _base, cfg_file = results_tree
    src = tiny_layout
    dst = Layout.from_config(cfg, tmp_path)
    shutil.copytree(src.eval_dir, dst.eval_dir)
    shutil.copytree(src.sensitivity_dir, dst.sensitivity_dir)
    dst.eval_json("cut-k1", FINETUNED).unlink()
    dst.sensitivity_json("up3").unlink()
    with pytest.raises(
        ReportError,
        match=rf"missing {re.escape(str(dst.eval_json('cut-k1', FINETUNED)))}: .*unetprune evaluate "
        rf"--checkpoint {re.escape(str(dst.checkpoint('cut-k1', FINETUNED)))} ",
    ):
        main_table(cfg, tmp_path)
    with pytest.raises(
        ReportError,
        match=rf"missing {re.escape(str(dst.sensitivity_json('up3')))}: .*unetprune sweep .*--layer up3",
    ):
        sensitivity_table(cfg, tmp_path)
    # the CLI prints one line and exits 2, writing nothing
    assert main(["report", "--config", str(cfg_file), "--results", str(tmp_path)]) == 2
    assert not dst.report_md.exists() and not dst.tables_dir.exists() and not dst.metrics_json.exists()


def test_quality_metric_switch(results_tree):
    from unetprune.report import comparison_table, main_table, sensitivity_table

    cfg, base, _ = results_tree
    cfg = {**cfg, "report": {**cfg["report"], "quality_metric": "psnr"}}
    df = sensitivity_table(cfg, base)
    assert (df.quality == df.psnr).all()
    assert np.allclose(df.degradation, df.quality_full - df.psnr)  # higher PSNR is better
    comp = comparison_table(cfg, main_table(cfg, base))
    assert (comp.better == "higher").all()
    assert np.allclose(comp.advantage, comp.variant_value - comp.baseline_value)
    assert all(math.isfinite(x) for x in comp.advantage)


def test_without_finetuning_the_tables_use_the_pruned_models(results_tree, tiny_layout):
    from unetprune.report import comparison_table, main_table

    cfg, base, _ = results_tree
    cfg = {**cfg, "finetune": {**cfg["finetune"], "enabled": False}}
    assert pipeline.final_stage(cfg) == PRUNED
    main = main_table(cfg, base)
    assert len(main) == 1 + len(pipeline.all_variants(cfg)) and set(main.stage) == {ORIGINAL, PRUNED}
    comp = comparison_table(cfg, main)
    assert set(comp.stage) == {PRUNED} and len(comp) == 4
    pv = _eval(tiny_layout, "cut-k1", PRUNED)["fid"]["value"]
    assert comp[comp.variant == "cut-k1"].variant_value.iloc[0] == pytest.approx(pv)
