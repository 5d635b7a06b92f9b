"""`unetprune report`: the tables, figures and report.md of a tiny but REAL experiment.

The session fixture runs the actual pipeline functions on a 32 px demo dataset: train the
baseline, sweep every layer, prune the variants and the matched global baselines with
`unetprune prune`, fine-tune, evaluate every model, then `unetprune report`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from unetprune import pipeline
from unetprune.config import load_config, results_dir

CFG = {
    "experiment": "tiny",
    "data": {"dataset": "folder", "crop_size": 32, "load_size": 32},
    "demo": {"image_size": 32},
    "model": {"num_downs": 5, "ngf": 16, "ndf": 8},  # ngf 16: fine enough widths to match budgets within 1%
    "train": {"n_epochs": 1, "n_epochs_decay": 0, "eval_images": 2, "threads": 1},
    "variants": [{"strategy": "inner", "ratio": 0.5}, {"strategy": "cut", "k": 1}],
    "sensitivity": {"ratios": [0.5]},
    "evaluate": {"fid_backend": "standin", "max_images": 4, "segmentation": "demo"},
    "finetune": {"enabled": True, "n_epochs": 1, "n_epochs_decay": 0},
    "report": {"sample_images": 2},
}


def _sweep_metric(r: dict) -> dict:
    return {
        "fid": r["fid"]["value"],
        "kid": r["kid"]["mean"],
        "miou": r["segmentation"]["miou"],
        "l1": r["l1"],
        "psnr": r["psnr"],
        "ssim": r["ssim"],
    }


def build_tree(root: Path) -> tuple[dict, Path, Path]:
    """A complete results tree made by the real library functions, then `unetprune report`."""
    from unetprune.checkpoint import atomic_write_text, generator_from_checkpoint
    from unetprune.cli import main
    from unetprune.data.demo import build_demo_dataset
    from unetprune.evaluate import Evaluator
    from unetprune.pruning import sensitivity_sweep
    from unetprune.train import train

    build_demo_dataset(root / "data", image_size=32, n_train=4, n_val=2, n_test=4, progress=False)
    raw = {**CFG, "data": {**CFG["data"], "root": str(root / "data")}}
    cfg = load_config(None, raw)
    cfg_file = root / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    base = root / "results"
    exp = results_dir(cfg, base)
    train(cfg, exp / "baseline", progress=False)
    ev = Evaluator(cfg, "test", cache_dir=root / "fid_stats", latency=False)
    G = generator_from_checkpoint(exp / "baseline" / "checkpoint.pt")
    sensitivity_sweep(
        G,
        pipeline.sensitivity_layers(cfg),
        cfg["sensitivity"]["ratios"],
        lambda g: _sweep_metric(ev.score(g)),
        exp / "sensitivity",
        seed=0,
        input_shape=(1, 3, 32, 32),
        include_full=True,
    )
    for name in pipeline.all_variants(cfg):
        d = exp / "variants" / name
        assert (
            main(
                [
                    "prune",
                    "--checkpoint",
                    str(exp / "baseline" / "checkpoint.pt"),
                    "--out",
                    str(d / "pruned.pt"),
                    "--json",
                    str(d / "prune.json"),
                    *pipeline.prune_cli_args(cfg, name, exp),
                ]
            )
            == 0
        )
        ft = {**cfg, "train": {**cfg["train"], "n_epochs": 1, "n_epochs_decay": 0}}
        train(ft, d / "finetune", init_from=d / "pruned.pt", progress=False)
    ev.latency = True

    def score(ckpt: Path, out: Path) -> None:
        r = ev.score(generator_from_checkpoint(ckpt), checkpoint=ckpt)
        r["experiment"] = cfg["experiment"]
        atomic_write_text(out, json.dumps(r, indent=2))

    score(exp / "baseline" / "checkpoint.pt", exp / "eval" / "original.json")
    for name in pipeline.all_variants(cfg):
        d = exp / "variants" / name
        score(d / "pruned.pt", exp / "eval" / f"{name}__pruned.json")
        score(d / "finetune" / "checkpoint.pt", exp / "eval" / f"{name}__finetuned.json")
    assert main(["report", "--config", str(cfg_file), "--results", str(base)]) == 0
    return cfg, base, cfg_file


@pytest.fixture(scope="session")
def results_tree(tmp_path_factory):
    """(cfg, results base, config file) of the tiny experiment, built once per session
    (also when test_tracking imports this fixture)."""
    root = tmp_path_factory.getbasetemp() / "report-tree"
    done = root / ".done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        build_tree(root)
        done.touch()
    raw = yaml.safe_load((root / "config.yaml").read_text())
    return load_config(None, raw), root / "results", root / "config.yaml"


def _eval(base, cfg, name):
    return json.loads((results_dir(cfg, base) / "eval" / f"{name}.json").read_text())


# ------------------------------------------------------------------------------------------


def test_main_table_has_every_model_and_stage_with_the_json_values(results_tree):
    from unetprune.report import main_table
    from unetprune.report.tables import MAIN_COLUMNS

    cfg, base, _ = results_tree
    df = main_table(cfg, base)
    assert list(df.columns) == MAIN_COLUMNS
    for col in (
        "params",
        "macs_physical",
        "macs_output",
        "latency_ms",
        "fid",
        "fid_backend",
        "miou",
        "l1",
        "psnr",
        "ssim",
    ):
        assert col in df.columns
    variants = list(pipeline.all_variants(cfg))
    assert len(variants) == 6  # inner, cut, 2 baselines each
    expected = [("original", "trained")] + [(v, s) for v in variants for s in ("pruned", "finetuned")]
    assert list(zip(df.variant, df.stage)) == expected
    assert set(df.group) == {"original", "primary", "baseline"}
    for _, row in df.iterrows():
        r = _eval(base, cfg, pipeline.eval_name(row.variant, row.stage))
        assert row.params == r["complexity"]["params"]
        assert row.macs_physical == r["complexity"]["macs_physical"]
        assert row.macs_output == r["complexity"]["macs_output"]
        assert row.fid == pytest.approx(r["fid"]["value"]) and row.fid_backend == "standin"
        assert row.psnr == pytest.approx(r["psnr"]) and row.ssim == pytest.approx(r["ssim"])
        assert row.miou == pytest.approx(r["segmentation"]["miou"])
        assert (
            row.latency_ms == pytest.approx(r["complexity"]["latency"][0]["median_ms"]) and row.latency_ms > 0
        )
    base_rows = df[df.group == "baseline"]
    assert (base_rows.matched_to != "").all() and base_rows.budget_gap.abs().max() <= 0.0101
    assert df[df.group != "baseline"].budget_gap.isna().all()
    orig = df.iloc[0]
    assert orig.params_fraction == 1.0
    cut = df[(df.variant == "cut-k1") & (df.stage == "pruned")].iloc[0]
    assert cut.params < orig.params and cut.params_fraction == pytest.approx(cut.params / orig.params)
    # the written table is the same
    csv = pd.read_csv(results_dir(cfg, base) / "tables" / "main.csv")
    assert len(csv) == len(df) and list(csv.params) == list(df.params)
    md = (results_dir(cfg, base) / "tables" / "main.md").read_text()
    assert f"{int(orig.params):,}" in md and "global-threshold-match-cut-k1" in md


def test_comparison_table_pairs_each_variant_with_its_baselines(results_tree):
    from unetprune.report import comparison_table, main_table

    cfg, base, _ = results_tree
    main = main_table(cfg, base)
    comp = comparison_table(cfg, main)
    assert len(comp) == 4 and set(comp.stage) == {"finetuned"}
    for _, r in comp.iterrows():
        assert r.baseline.endswith(f"-match-{r.variant}")
        pv = _eval(base, cfg, f"{r.variant}__finetuned")["fid"]["value"]
        bv = _eval(base, cfg, f"{r.baseline}__finetuned")["fid"]["value"]
        assert r.variant_value == pytest.approx(pv) and r.baseline_value == pytest.approx(bv)
        assert r.advantage == pytest.approx(bv - pv)  # FID: lower is better
        assert r.winner == (r.variant if pv < bv else r.baseline if bv < pv else "tie")


def test_sensitivity_table_is_layers_by_ratios(results_tree):
    from unetprune.report import sensitivity_summary, sensitivity_table

    cfg, base, _ = results_tree
    df = sensitivity_table(cfg, base)
    layers = pipeline.prunable_layers(cfg)
    assert len(df) == len(layers) * len(cfg["sensitivity"]["ratios"])
    assert list(df.layer) == layers  # outer -> inner -> outer
    assert set(df[df.inner].layer) == {"down5", "up5"}  # the widest levels of this ngf=16 model
    for _, row in df.iterrows():
        d = json.loads((results_dir(cfg, base) / "sensitivity" / f"{row.layer}.json").read_text())
        assert row.fid == pytest.approx(d["metrics"][0]["fid"]) and row.width == d["widths"][0]
        assert row.degradation == pytest.approx(d["metrics"][0]["fid"] - d["metrics_full"]["fid"])
    s = sensitivity_summary(df)
    assert len(s) == 1
    assert s.mean_degradation_inner[0] == pytest.approx(df[df.inner].degradation.mean())
    assert s.mean_degradation_outer[0] == pytest.approx(df[~df.inner].degradation.mean())
    assert s.inner_less_sensitive[0] == (s.mean_degradation_inner[0] < s.mean_degradation_outer[0])
    matrix = pd.read_csv(results_dir(cfg, base) / "tables" / "sensitivity_matrix.csv")
    assert list(matrix.layer) == layers and "r=0.5" in matrix.columns


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    return np.asarray(Image.open(path).convert("RGB"))


def test_figures_are_real_pngs(results_tree):
    cfg, base, _ = results_tree
    fig = results_dir(cfg, base) / "figures"
    for name in ("sensitivity", "tradeoff"):
        a = _png(fig / f"{name}.png")
        assert a.shape[0] > 300 and a.shape[1] > 500 and a.std() > 10
    s = _png(fig / "samples.png")
    p = _png(fig / "samples_pruned.png")
    n_cols = 2 + 1 + len(pipeline.all_variants(cfg))  # input, target, original, every variant
    assert s.shape == p.shape and s.shape[1] > s.shape[0] * (n_cols / cfg["report"]["sample_images"]) * 0.7
    assert not np.array_equal(s, p)  # fine-tuned outputs differ from the pruned ones


def test_sample_grid_uses_the_same_inputs_for_every_model(results_tree, tmp_path):
    from unetprune.report.figures import sample_models

    cfg, _base, _ = results_tree
    cols = sample_models(cfg, "finetuned")
    assert cols[0] == ("original", "trained") and len(cols) == 1 + len(pipeline.all_variants(cfg))
    assert all(s == "finetuned" for _, s in cols[1:])


def test_report_md_states_findings_from_the_data_and_assumptions(results_tree):
    from unetprune.report import all_tables

    cfg, base, _ = results_tree
    text = (results_dir(cfg, base) / "report.md").read_text()
    t = all_tables(cfg, base)
    s = t["sensitivity_summary"].iloc[0]
    verdict = "**Yes**" if s.inner_less_sensitive else "**No**"
    assert f"{verdict}: the sensitivity curve" in text
    assert f"degrades FID by {s.mean_degradation_inner:+.4g} on average" in text
    assert f"one outer layer by {s.mean_degradation_outer:+.4g}" in text
    assert "(down5, up5)" in text
    comp = t["comparison"]
    wins = int((comp.winner == comp.variant).sum())
    assert f"beat their matched global baselines in {wins} of 4 comparisons on FID after fine-tuning" in text
    for _, r in comp.iterrows():
        line = next(x for x in text.splitlines() if x.startswith(f"* {r.variant} vs {r.baseline} "))
        assert f"FID {r.variant_value:.4g} vs {r.baseline_value:.4g}" in line
        assert f"**{r.winner} wins** by {abs(r.advantage):.4g}" in line
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
        "figures/sensitivity.png",
        "figures/tradeoff.png",
        "figures/samples.png",
        "| variant ",
        "| layer ",
    ):
        assert needle in text, needle


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
    assert v.startswith("**Partly**") and "1 of 2" in v and "(0.3)" in v and len(lines) == 2
    comp = pd.DataFrame(
        [
            {
                "variant": "cut-k2",
                "baseline": "global-uniform-match-cut-k2",
                "stage": "finetuned",
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
    comp.attrs.update(metric="psnr", stage="finetuned")
    v, lines = comparison_findings(comp)
    assert v.startswith("**No**") and "0 of 1" in v and "at most 0.50%" in v
    assert "**global-uniform-match-cut-k2 wins** by 2" in lines[0] and "1,000 vs 1,005" in lines[0]


def test_mixed_fid_backends_are_refused(results_tree):
    from unetprune.report import ReportError, main_table
    from unetprune.report.tables import load_all_evals

    cfg, base, _ = results_tree
    evals = load_all_evals(cfg, base)
    bad = json.loads(json.dumps(evals[("cut-k1", "finetuned")]))
    bad["fid"]["backend"] = "inception-v3-compat"
    bad["fid"]["extractor"]["weights_sha256"] = "f" * 64
    evals[("cut-k1", "finetuned")] = bad
    with pytest.raises(ReportError, match="different backends.*cut-k1__finetuned.json"):
        main_table(cfg, base, evals=evals)


def test_missing_inputs_name_the_file_and_the_command(results_tree, tmp_path):
    from unetprune.cli import main
    from unetprune.report import ReportError, main_table, sensitivity_table

    cfg, base, cfg_file = results_tree
    src = results_dir(cfg, base)
    dst = results_dir(cfg, tmp_path)
    shutil.copytree(src / "eval", dst / "eval")
    shutil.copytree(src / "sensitivity", dst / "sensitivity")
    (dst / "eval" / "cut-k1__finetuned.json").unlink()
    (dst / "sensitivity" / "up3.json").unlink()
    with pytest.raises(
        ReportError,
        match=r"missing .*eval/cut-k1__finetuned\.json: .*unetprune evaluate "
        r"--checkpoint .*variants/cut-k1/finetune/checkpoint\.pt",
    ):
        main_table(cfg, tmp_path)
    with pytest.raises(
        ReportError, match=r"missing .*sensitivity/up3\.json: .*unetprune sweep .*--layer up3"
    ):
        sensitivity_table(cfg, tmp_path)
    # the CLI prints one line and exits 2, writing nothing
    assert main(["report", "--config", str(cfg_file), "--results", str(tmp_path)]) == 2
    assert not (dst / "report.md").exists() and not (dst / "tables").exists()


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


def test_without_finetuning_the_tables_use_the_pruned_models(results_tree):
    from unetprune.report import comparison_table, main_table

    cfg, base, _ = results_tree
    cfg = {**cfg, "finetune": {**cfg["finetune"], "enabled": False}}
    main = main_table(cfg, base)
    assert len(main) == 1 + len(pipeline.all_variants(cfg)) and set(main.stage) == {"trained", "pruned"}
    comp = comparison_table(cfg, main)
    assert set(comp.stage) == {"pruned"} and len(comp) == 4
    pv = _eval(base, cfg, "cut-k1__pruned")["fid"]["value"]
    assert comp[comp.variant == "cut-k1"].variant_value.iloc[0] == pytest.approx(pv)
