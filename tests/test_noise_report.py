"""Noise levels in the report: the tables and figures, findings
phrased by significance, collapse flags on sensitivity points, the learning curve.

Everything here runs on synthetic evaluation / sweep / training JSONs in the exact schema the
pipeline writes (the eval JSON's ``noise`` block: seeds, bootstrap, per metric mean / std_seed /
std_boot / std / ci95), so every expected number is known in advance.  A difference counts
only beyond 2 combined standard deviations, sqrt(std_a^2 + std_b^2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from unetprune import pipeline
from unetprune.config import load_config
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED, Layout

VARIANT, BASELINE = "cut-k1", "global-uniform-match-cut-k1"


def _cfg(root: Path, **over) -> dict:
    raw = {
        "experiment": "noise",
        "data": {"dataset": "folder", "root": str(root / "data"), "crop_size": 32, "load_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 16, "ndf": 8}},
        "variants": [{"strategy": "cut", "k": 1}],
        "baselines": {"strategies": ["global-uniform"]},
        "sensitivity": {"ratios": [0.5, 0.9]},
        "evaluate": {"fid_backend": "standin"},
        **over,
    }
    return load_config(None, raw)


def _noise(values: dict[str, tuple[float, float]], seeds=(0, 1, 2), bootstrap=200) -> dict:
    """A noise block: per metric (value, std), split evenly into seed and bootstrap parts."""
    return {
        "seeds": list(seeds),
        "bootstrap": bootstrap,
        "metrics": {
            m: {
                "mean": v,
                "std_seed": s / math.sqrt(2),
                "std_boot": s / math.sqrt(2),
                "std": s,
                "ci95": [v - 1.96 * s, v + 1.96 * s],
            }
            for m, (v, s) in values.items()
        },
    }


def _eval(fid, fid_std=None, *, l1=0.3, l1_std=None, div=0.8, params=1000, kid=0.01) -> dict:
    r = {
        "fid": {
            "value": fid,
            "backend": "standin",
            "extractor": {"weights_sha256": "a" * 64},
            "image_size": 32,
        },
        "kid": {"mean": kid},
        "segmentation": {"miou": 0.5},
        "l1": l1,
        "psnr": 20.0,
        "ssim": 0.5,
        "diversity": {"ratio": div, "collapsed": div < 0.1},
        "complexity": {
            "params": params,
            "macs_physical": 10 * params,
            "macs_output": 20 * params,
            "latency": [],
        },
        "n_images": 32,
        "split": "test",
        "mode": "train_bn",
    }
    if fid_std is not None:
        r["noise"] = _noise({"fid": (fid, fid_std), **({"l1": (l1, l1_std)} if l1_std is not None else {})})
    return r


def _evals(variant: dict, baseline: dict) -> dict:
    return {
        (ORIGINAL, ORIGINAL): _eval(9.0, 0.2, params=2000),
        (VARIANT, PRUNED): _eval(20.0, 1.0),
        (VARIANT, FINETUNED): variant,
        (BASELINE, PRUNED): _eval(30.0, 1.0, params=1005),
        (BASELINE, FINETUNED): baseline,
    }


def _compare(cfg, variant, baseline):
    from unetprune.report import comparison_findings, comparison_table, main_table

    main = main_table(cfg, "unused", evals=_evals(variant, baseline))
    comp = comparison_table(cfg, main)
    verdict, lines = comparison_findings(comp)
    return main, comp.iloc[0], verdict, lines[0]


# ------------------------------------------------------------------------------------------
# reading the noise block
# ------------------------------------------------------------------------------------------


def test_eval_numbers_carry_the_noise_of_every_quality_metric():
    from unetprune.report import NOISE_COLUMNS, eval_numbers, noise_setup

    n = eval_numbers(_eval(10.0, 0.5, l1=0.25, l1_std=0.01))
    assert n["fid"] == 10.0 and n["fid_std"] == 0.5
    assert n["fid_ci95_lo"] == pytest.approx(10.0 - 0.98) and n["fid_ci95_hi"] == pytest.approx(10.98)
    assert n["l1_std"] == 0.01 and n["l1_ci95_lo"] == pytest.approx(0.25 - 0.0196)
    assert math.isnan(n["kid_std"]) and math.isnan(n["psnr_ci95_hi"])  # not in the noise block
    assert n["noise_seeds"] == 3 and n["noise_bootstrap"] == 200
    # an old evaluation without the block: every noise cell NaN ("n/a")
    old = eval_numbers(_eval(10.0))
    assert all(math.isnan(old[c]) for c in NOISE_COLUMNS) and math.isnan(old["noise_seeds"])
    # one seed without bootstrap measured nothing: unknown, not zero
    trivial = _eval(10.0, 0.0)
    trivial["noise"].update(seeds=[0], bootstrap=0)
    assert noise_setup(trivial) is None and math.isnan(eval_numbers(trivial)["fid_std"])
    # deterministic generation (one seed) with bootstrap: known; a missing std is rebuilt from its parts
    boot = _eval(10.0, 0.3)
    boot["noise"]["seeds"] = [0]
    boot["noise"]["metrics"]["fid"].update(std=None, std_seed=0.0, std_boot=0.3)
    assert noise_setup(boot) == {"seeds": 1, "bootstrap": 200} and eval_numbers(boot)["fid_std"] == 0.3


def test_pattern_finding_counts_only_differences_beyond_the_noise():
    from unetprune.report import pattern_finding

    # point values alone (no noise): the sign of the difference decides
    assert pattern_finding(0.1, 2.0) == "support" and pattern_finding(0.2, 0.3) == "support"
    # outer 2.0 ± 0.1, inner 0.1 ± 0.1, difference ± 0.15: beyond 2 std -> support
    assert pattern_finding(0.1, 2.0, 0.1, 0.1, 0.15) == "support"
    # 0.3 vs 0.2 with a difference std of 0.16: within 2 std -> not resolved
    assert pattern_finding(0.2, 0.3, 0.17, 0.13, 0.16) == "not resolved"
    # the outer layers' own degradation within its noise: not resolved even if the difference is large
    assert pattern_finding(-1.0, 0.1, 0.1, 0.1, 0.1) == "not resolved"
    # inner clearly worse: against; both improved: no effect whatever the noise
    assert pattern_finding(2.0, 0.1, 0.1, 0.1, 0.15) == "against"
    assert pattern_finding(-0.2, -0.1, 0.01, 0.01, 0.01) == "no effect"
    assert pattern_finding(0.2, 0.2, 0.0, 0.0, 0.0) == "not resolved"  # equal: neither beyond the other
    assert pattern_finding(0.1, 2.0, float("nan"), 0.1, 0.15) == "support"  # unknown noise: point values


# ------------------------------------------------------------------------------------------
# variant vs baseline
# ------------------------------------------------------------------------------------------


def test_comparison_below_the_noise_is_not_resolved(tmp_path):
    cfg = _cfg(tmp_path)
    # FID 10 ± 0.3 vs 10.5 ± 0.4: difference 0.5, combined std 0.5, 2 std = 1 -> not resolved
    _, r, verdict, line = _compare(cfg, _eval(10.0, 0.3), _eval(10.5, 0.4, params=1005))
    assert r.metric_winner == VARIANT and r.winner == "not resolved" and bool(r.resolved) is False
    assert r.variant_std == 0.3 and r.baseline_std == 0.4 and r.difference_std == pytest.approx(0.5)
    assert line == (
        f"{VARIANT} vs {BASELINE} (after fine-tuning): FID 10 ± 0.3 vs 10.5 ± 0.4 (lower is "
        f"better): **not resolved at this noise level**: FID favours {VARIANT} by 0.5 (4.76%), within "
        f"2σ = 1; budgets (params) 1,000 vs 1,005 (baseline +0.50%). Power: the difference +0.5 ± 0.5 "
        "is within 2σ = 1, the smallest difference resolvable at this noise; how many images would "
        "resolve it is unknown (no measured scaling of the noise with n)."
    )
    assert verdict.startswith(
        "**Not resolved at this noise level**: the inner/cut variants beat their matched "
        "global baselines in 0 of 1 comparisons on FID (`standin` backend) after fine-tuning"
    )
    assert "1 of 1 comparison(s) are not resolved at this noise level" in verdict
    assert "A difference counts only beyond 2 combined standard deviations" in verdict


def test_comparison_beyond_the_noise_gives_the_verdict(tmp_path):
    cfg = _cfg(tmp_path)
    # FID 10 ± 0.3 vs 12 ± 0.4: difference 2 > 2 x 0.5 -> the variant wins
    _, r, verdict, line = _compare(cfg, _eval(10.0, 0.3), _eval(12.0, 0.4, params=1005))
    assert r.winner == r.metric_winner == VARIANT and bool(r.resolved) is True and r.decided_by == "fid"
    assert f"**{VARIANT} wins** by 2 (16.7%; beyond 2σ = 1)" in line
    assert verdict.startswith(
        "**Yes**: the inner/cut variants beat their matched global baselines in 1 of 1 "
        "comparisons on FID (`standin` backend) after fine-tuning (cut-k1: 1 of 1)"
    )
    assert "not resolved" not in verdict
    # the baseline better beyond the noise: No
    _, r, verdict, line = _compare(cfg, _eval(12.0, 0.3), _eval(10.0, 0.4, params=1005))
    assert r.winner == BASELINE and verdict.startswith("**No**") and f"**{BASELINE} wins** by 2" in line


def test_comparison_without_noise_says_the_noise_level_is_unknown(tmp_path):
    _, r, verdict, line = _compare(_cfg(tmp_path), _eval(10.0), _eval(10.5, params=1005))
    assert r.winner == VARIANT and r.resolved is None and math.isnan(r.difference_std)
    assert line.startswith(
        f"{VARIANT} vs {BASELINE} (after fine-tuning): FID 10 vs 10.5 (lower is better): "
        f"**{VARIANT} wins** by 0.5 (4.76%; noise level unknown)"
    )
    assert verdict.startswith("**Yes**") and verdict.endswith(
        "The noise level is unknown (the evaluations recorded no repeated generation or bootstrap), so these "
        "differences are not tested against it."
    )


def test_collapse_decides_whatever_the_noise(tmp_path):
    # the baseline is collapsed; FID cannot separate the two models within the noise
    _, r, verdict, line = _compare(_cfg(tmp_path), _eval(10.0, 0.3), _eval(10.2, 0.4, div=0.0, params=1005))
    assert r.winner == VARIANT and r.decided_by == "collapse" and bool(r.resolved) is False
    assert f"**{VARIANT} wins** by the collapse check (FID favours {VARIANT} by 0.2, within 2σ = 1)" in line
    assert verdict.startswith("**Yes**")


def test_other_metrics_disagree_only_beyond_their_noise(tmp_path):
    cfg = _cfg(tmp_path)
    # FID prefers the variant clearly; L1 prefers the baseline by 0.01 with std 0.02 each: within the noise
    v, b = _eval(10.0, 0.3, l1=0.30, l1_std=0.02), _eval(12.0, 0.4, l1=0.29, l1_std=0.02, params=1005)
    _, r, _, line = _compare(cfg, v, b)
    assert r.disagree == "" and r.unresolved == "l1" and r.winner == VARIANT
    assert line.endswith("Within the noise on L1.")
    # ... and beyond it (std 0.001): a disagreement, named
    v, b = _eval(10.0, 0.3, l1=0.30, l1_std=0.001), _eval(12.0, 0.4, l1=0.29, l1_std=0.001, params=1005)
    _, r, _, line = _compare(cfg, v, b)
    assert r.disagree == "l1" and r.unresolved == ""
    assert f"L1 disagrees with FID (favouring {BASELINE})." in line


def test_main_and_comparison_markdown_show_value_plus_minus_std(tmp_path):
    from unetprune.report import MAIN_COLUMNS, NOISE_COLUMNS, markdown_view, to_markdown

    cfg = _cfg(tmp_path)
    main, _, _, _ = _compare(cfg, _eval(10.0, 0.3, l1=0.25, l1_std=0.012), _eval(10.5, params=1005))
    assert list(main.columns) == MAIN_COLUMNS and set(NOISE_COLUMNS) <= set(main.columns)
    row = main[(main.variant == VARIANT) & (main.stage == FINETUNED)].iloc[0]
    assert row.fid_std == 0.3 and row.l1_std == 0.012 and math.isnan(row.kid_std)
    md = to_markdown(markdown_view("main", main))
    assert "fid_std" not in md and "ci95" not in md and "noise_seeds" not in md
    line = next(x for x in md.splitlines() if x.startswith(f"| {VARIANT} ") and "| finetuned " in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    got = dict(zip(header, cells))
    assert got["fid"] == "10 ± 0.3" and got["l1"] == "0.25 ± 0.012" and got["kid"] == "0.01 ± n/a"
    base_line = next(x for x in md.splitlines() if x.startswith(f"| {BASELINE} ") and "| finetuned " in x)
    assert dict(zip(header, [c.strip() for c in base_line.strip("|").split("|")]))["fid"] == "10.5 ± n/a"


def test_metrics_json_holds_the_std(tmp_path):
    from unetprune.report import main_metrics

    main, _, _, _ = _compare(_cfg(tmp_path), _eval(10.0, 0.3), _eval(10.5, params=1005))
    m = main_metrics(main)
    assert m[f"{VARIANT}/{FINETUNED}"]["fid_std"] == 0.3
    assert "fid_std" not in m[f"{BASELINE}/{FINETUNED}"] and m[ORIGINAL]["fid_std"] == 0.2


# ------------------------------------------------------------------------------------------
# sensitivity
# ------------------------------------------------------------------------------------------


def _write_sweep(cfg, base, values: dict, std: float | None, full=(10.0, 0.1), collapsed_at=("down1", 0.9)):
    """Sensitivity JSONs as `unetprune sweep` writes them: ``values[ratio][inner?]`` = FID of every
    point, each with ``std`` (None: an old sweep without noise); one point has diversity 0.05."""
    from unetprune.report import inner_layers

    lay = Layout.from_config(cfg, base)
    lay.sensitivity_dir.mkdir(parents=True, exist_ok=True)
    inner = set(inner_layers(cfg))

    def point(fid, s, div=0.8):
        p = {"fid": fid, "l1": 0.3, "psnr": 20.0, "ssim": 0.5, "diversity": div}
        if s is not None:
            p.update(fid_std=s, fid_ci95_lo=fid - 1.96 * s, fid_ci95_hi=fid + 1.96 * s)
        return p

    ratios = sorted(values)
    for layer in pipeline.sensitivity_layers(cfg):
        pts = [
            point(values[r][layer in inner], std, 0.05 if (layer, r) == collapsed_at else 0.8) for r in ratios
        ]
        d = {
            "layer": layer,
            "ratios": ratios,
            "metrics": pts,
            "params": [100] * len(ratios),
            "macs_physical": [10] * len(ratios),
            "macs_output": [20] * len(ratios),
            "widths": [8] * len(ratios),
            "metrics_full": point(full[0], full[1] if std is not None else None),
            "fid_backend": "standin",
            "collapsed": [p["diversity"] < 0.1 for p in pts],
            "collapse_threshold": 0.1,
        }
        lay.sensitivity_json(layer).write_text(json.dumps(d))
    return lay


def test_sensitivity_points_carry_noise_and_collapse_flags(tmp_path):
    from unetprune.report import sensitivity_table
    from unetprune.report import markdown_view, sensitivity_pivot, to_markdown

    cfg = _cfg(tmp_path)
    _write_sweep(cfg, tmp_path, {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 10.3, True: 10.2}}, 0.2)
    df = sensitivity_table(cfg, tmp_path)
    assert (df.quality_std == 0.2).all() and (df.quality_full_std == 0.1).all()
    assert df.degradation_std.iloc[0] == pytest.approx(math.sqrt(0.2**2 + 0.1**2))
    assert df.quality_ci95_lo.iloc[0] == pytest.approx(12.0 - 0.392)
    hit = df[df.collapsed.map(bool)]
    assert list(zip(hit.layer, hit.ratio)) == [("down1", 0.9)] and hit.diversity.iloc[0] == 0.05
    # the threshold is the config's: at 0.01 nothing is collapsed
    low = sensitivity_table({**cfg, "evaluate": {**cfg["evaluate"], "collapse_threshold": 0.01}}, tmp_path)
    assert not low.collapsed.map(bool).any()
    matrix = sensitivity_pivot(df)
    assert list(matrix.columns) == [
        "layer",
        "inner",
        "r=0.5",
        "r=0.9",
        "unpruned",
        "r=0.5 std",
        "r=0.9 std",
        "unpruned std",
        "collapsed",
    ]
    assert matrix.collapsed.tolist() == ["0.9"] + [""] * 8
    md = to_markdown(markdown_view("sensitivity_matrix", matrix))
    assert "| down1   |         | 12 ± 0.2   | 10.3 ± 0.2 (collapsed) | 10 ± 0.1   |" in md
    assert "| down5   | yes     | 10.1 ± 0.2 | 10.2 ± 0.2             | 10 ± 0.1   |" in md
    table_md = to_markdown(markdown_view("sensitivity", df))
    assert "| 12 ± 0.2 " in table_md and "quality_std" not in table_md and "ci95" not in table_md


def test_sensitivity_findings_by_significance(tmp_path):
    from unetprune.report import sensitivity_findings, sensitivity_summary, sensitivity_table

    cfg = _cfg(tmp_path)
    # ratio 0.5: outer +2, inner +0.1 (beyond the noise); ratio 0.9: outer +0.3, inner +0.2 (within it)
    _write_sweep(cfg, tmp_path, {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 10.3, True: 10.2}}, 0.2)
    s = sensitivity_summary(sensitivity_table(cfg, tmp_path))
    # 2 inner and 7 outer points of std 0.2, unpruned std 0.1
    std_i, std_o = math.hypot(0.2 / math.sqrt(2), 0.1), math.hypot(0.2 / math.sqrt(7), 0.1)
    std_d = math.hypot(0.2 / math.sqrt(2), 0.2 / math.sqrt(7))
    assert s.std_inner.tolist() == pytest.approx([std_i] * 2) and s.std_outer.tolist() == pytest.approx(
        [std_o] * 2
    )
    assert s.std_difference.tolist() == pytest.approx([std_d] * 2)
    assert s.finding.tolist() == ["support", "not resolved"]
    assert s.finding_point.tolist() == ["support", "support"]
    assert s.inner_less_sensitive.tolist() == [True, None] and s.noise_known.tolist() == [True, True]
    assert s.collapsed_points.tolist() == ["", "down1@0.9"]
    verdict, lines = sensitivity_findings(s)
    assert verdict.startswith(
        "**Partly**: on FID (`standin` backend), the sensitivity curve shows the paper's "
        "inner-layers-are-prunable pattern at 1 of 2 swept ratios (0.5)."
    )
    assert (
        "At ratio(s) 0.9 the difference is not resolved at this noise level (within 2 standard deviations)."
        in verdict
    )
    assert verdict.endswith(
        "A difference counts only beyond 2 standard deviations of its noise (σ = sqrt(σ_a² + σ_b²))."
    )
    assert lines[0].startswith(
        "At ratio 0.5, pruning one inner layer (down5, up5) degrades FID by +0.1 on average "
        "(± 0.17, +1%), one outer layer by +2 (± 0.13, +20%): support — the inner layers are "
        "less sensitive (difference outer − inner +1.9 ± 0.16, beyond 2σ = 0.321)."
    )
    assert lines[1].startswith(
        "At ratio 0.9, pruning one inner layer (down5, up5) degrades FID by +0.2 on average "
        "(± 0.17, +2%), one outer layer by +0.3 (± 0.13, +3%): not resolved at this noise "
        "level — the degradations or their difference are within 2 standard deviations of "
        "the noise (difference outer − inner +0.1 ± 0.16, within 2σ = 0.321)."
    )
    # every ratio within the noise: the answer is "not resolved", never Yes/No
    _write_sweep(cfg, tmp_path, {0.5: {False: 10.3, True: 10.2}, 0.9: {False: 10.3, True: 10.2}}, 0.2)
    verdict, _ = sensitivity_findings(sensitivity_summary(sensitivity_table(cfg, tmp_path)))
    assert verdict.startswith(
        "**Not resolved at this noise level**: on FID (`standin` backend), the sensitivity "
        "curve neither shows nor refutes the paper's inner-layers-are-prunable pattern: at "
        "every swept ratio (2) the difference between inner and outer layers is within 2 "
        "standard deviations of the noise."
    )
    # both beyond the noise: Yes
    _write_sweep(cfg, tmp_path, {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 13.0, True: 10.0}}, 0.2)
    verdict, _ = sensitivity_findings(sensitivity_summary(sensitivity_table(cfg, tmp_path)))
    assert verdict.startswith("**Yes**") and "2 of 2" in verdict


def test_sensitivity_without_noise_keeps_the_point_verdict_and_says_so(tmp_path):
    from unetprune.report import sensitivity_findings, sensitivity_summary, sensitivity_table
    from unetprune.report import markdown_view, sensitivity_pivot, to_markdown

    cfg = _cfg(tmp_path)
    _write_sweep(cfg, tmp_path, {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 10.3, True: 10.2}}, None)
    df = sensitivity_table(cfg, tmp_path)
    assert df.quality_std.isna().all() and df.degradation_std.isna().all()
    s = sensitivity_summary(df)
    assert s.finding.tolist() == ["support", "support"] and s.noise_known.tolist() == [False, False]
    verdict, lines = sensitivity_findings(s)
    assert verdict.startswith("**Yes**") and verdict.endswith(
        "The noise level is unknown (the sweep recorded no repeated generation or bootstrap), so these "
        "differences are not tested against it."
    )
    assert lines[1] == (
        "At ratio 0.9, pruning one inner layer (down5, up5) degrades FID by +0.2 on average (+2%), "
        "one outer layer by +0.3 (+3%): support — the inner layers are less sensitive (difference "
        "outer − inner +0.1, noise level unknown). L1, PSNR and SSIM disagree (L1: no effect; PSNR: "
        "no effect; SSIM: no effect)."
    )
    md = to_markdown(markdown_view("sensitivity_matrix", sensitivity_pivot(df)))
    assert "| 12 ± n/a " in md


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the report functions would save, by file stem (nothing written)."""
    from unetprune.report import figures

    figs = {}

    def keep(fig, path):
        figs[Path(path).stem] = fig
        return Path(path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def test_sensitivity_figure_has_error_bars_and_marks_collapsed_points(tmp_path, captured):
    from unetprune.report import figures, sensitivity_table

    cfg = _cfg(tmp_path)
    _write_sweep(cfg, tmp_path, {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 10.3, True: 10.2}}, 0.2)
    figures.sensitivity_figure(sensitivity_table(cfg, tmp_path), tmp_path / "sensitivity.png")
    ax = captured["sensitivity"].axes[0]
    bars = ax.containers
    assert [c.get_label() for c in bars] == ["ratio 0.5", "ratio 0.9"] and all(c.has_yerr for c in bars)
    for c in bars:  # ± 1 std: every bar spans 2 x 0.2
        segs = c.lines[2][0].get_segments()
        assert len(segs) == 9 and all(s[1][1] - s[0][1] == pytest.approx(0.4) for s in segs)
    crosses = [
        c for c in ax.collections if len(c.get_facecolor()) and tuple(c.get_facecolor()[0]) == (1, 0, 0, 1)
    ]
    assert len(crosses) == 1 and crosses[0].get_offsets().tolist() == [[pytest.approx(0.06), 10.3]]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "inner levels",
        "unpruned",
        "unpruned ± 1 std",
        "ratio 0.5",
        "ratio 0.9",
        "collapsed (diversity < 0.1)",
    ]
    # an old sweep without noise or diversity: no error bars, no collapse entry
    _write_sweep(
        cfg,
        tmp_path,
        {0.5: {False: 12.0, True: 10.1}, 0.9: {False: 10.3, True: 10.2}},
        None,
        collapsed_at=None,
    )
    figures.sensitivity_figure(sensitivity_table(cfg, tmp_path), tmp_path / "sensitivity.png")
    ax = captured["sensitivity"].axes[0]
    assert not any(c.has_yerr for c in ax.containers)
    assert "collapsed (diversity < 0.1)" not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_tradeoff_figure_has_error_bars_and_marks_collapsed_models(tmp_path, captured):
    from unetprune.report import figures, main_table

    cfg = _cfg(tmp_path)
    main = main_table(cfg, "unused", evals=_evals(_eval(10.0, 0.3), _eval(10.5, 0.4, div=0.0, params=1005)))
    figures.tradeoff_figure(main, tmp_path / "tradeoff.png")
    fig = captured["tradeoff"]
    for ax in fig.axes:
        bars = [c for c in ax.containers if c.has_yerr]
        assert len(bars) == 5  # every model has its noise here
        spans = sorted(
            round(c.lines[2][0].get_segments()[0][1][1] - c.lines[2][0].get_segments()[0][0][1], 6)
            for c in bars
        )
        assert spans == [0.4, 0.6, 0.8, 2.0, 2.0]
        crosses = [
            c
            for c in ax.collections
            if len(c.get_facecolor()) and tuple(c.get_facecolor()[0]) == (1, 0, 0, 1)
        ]
        assert len(crosses) == 1 and crosses[0].get_offsets()[0][1] == 10.5  # the collapsed baseline
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "collapsed (diversity < 0.1)" in labels and "± 1 std (noise)" in labels


# ------------------------------------------------------------------------------------------
# the sweep records collapse flags and noise
# ------------------------------------------------------------------------------------------


def test_sweep_metric_flattens_the_noise_and_diversity():
    from unetprune.commands.sweep import collapse_flags, noise_record, sweep_metric

    r = _eval(10.0, 0.5, l1=0.25, l1_std=0.01, div=0.05)
    m = sweep_metric(r)
    assert m == {
        "fid": 10.0,
        "l1": 0.25,
        "psnr": 20.0,
        "ssim": 0.5,
        "kid": 0.01,
        "miou": 0.5,
        "diversity": 0.05,
        "fid_std": 0.5,
        "fid_ci95_lo": 10.0 - 0.98,
        "fid_ci95_hi": 10.0 + 0.98,
        "l1_std": 0.01,
        "l1_ci95_lo": 0.25 - 0.0196,
        "l1_ci95_hi": 0.25 + 0.0196,
    }
    assert noise_record(r) == {"seeds": [0, 1, 2], "bootstrap": 200} and noise_record(_eval(10.0)) is None
    assert set(sweep_metric(_eval(10.0))) == {"fid", "l1", "psnr", "ssim", "kid", "miou", "diversity"}
    flags = collapse_flags({"metrics": [m, {"fid": 1.0}], "metrics_full": {"diversity": 0.9}}, 0.1)
    assert flags == {"collapse_threshold": 0.1, "collapsed": [True, None], "collapsed_full": False}


def test_run_sweep_writes_collapse_flags_and_noise(tmp_path, monkeypatch):
    """`unetprune sweep` through a stand-in Evaluator whose scores depend on the pruned width:
    the layer JSON holds one collapse flag per ratio and each point's noise."""
    from unetprune import evaluate
    from unetprune.checkpoint import save_generator
    from unetprune.commands.sweep import run_sweep
    from unetprune.metrics.complexity import count_parameters
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator

    g = build_generator(UNetSpec.reference(5, 16), seed=0)
    save_generator(tmp_path / "g.pt", g)
    full = count_parameters(g)

    class FakeEvaluator:
        def __init__(self, cfg, split, **kw):
            self.mode = "train_bn"
            self.eval_set = type("ES", (), {"n": 4, "image_size": 32})()
            self.metrics = {"fid": type("F", (), {"extractor": type("X", (), {"backend": "standin"})()})()}

        def score(self, generator, noise_seeds=None):
            assert noise_seeds == 1  # the sweep keeps only the cheap bootstrap
            frac = count_parameters(generator) / full  # 1 for the unpruned model
            return _eval(10.0 / frac, 0.1, div=0.8 if frac > 0.9 else 0.05)

    monkeypatch.setattr(evaluate, "Evaluator", FakeEvaluator)
    cfg = _cfg(tmp_path, sensitivity={"ratios": [0.1, 0.9]})
    res = run_sweep(cfg, str(tmp_path / "g.pt"), ["down5"], out_dir=str(tmp_path / "sens"))
    d = json.loads((tmp_path / "sens" / "down5.json").read_text())
    assert d == json.loads(json.dumps(res["down5"]))
    ratios_frac = [p / full for p in d["params"]]
    assert d["collapsed"] == [f <= 0.9 for f in ratios_frac] and d["collapsed_full"] is False
    assert d["collapse_threshold"] == 0.1 and d["noise"] == {"seeds": [0, 1, 2], "bootstrap": 200}
    assert [m["fid_std"] for m in d["metrics"]] == [0.1, 0.1] and d["metrics_full"]["fid_std"] == 0.1
    assert [m["diversity"] for m in d["metrics"]] == [0.8 if not c else 0.05 for c in d["collapsed"]]
    assert d["collapsed"] == [False, True]  # 10% of down5 keeps 94.9% of the parameters, 90%: 54.5%


# ------------------------------------------------------------------------------------------
# the learning curve
# ------------------------------------------------------------------------------------------


def _train_log(scores, rel, *, n_epochs=4, n_epochs_decay=4, min_param="model.down1.weight") -> dict:
    epochs = [
        {
            "epoch": e,
            "lr": 2e-4,
            "seconds": 1.0,
            "images_per_s": 10.0,
            "G_GAN": 0.7,
            "G_L1": 10 * s,
            "D_real": 0.5,
            "D_fake": 0.5,
        }
        for e, s in enumerate(scores[1:], 1)
    ]
    return {
        "config": {"train": {"n_epochs": n_epochs, "n_epochs_decay": n_epochs_decay}},
        "epochs": epochs,
        "eval": {
            "split": "val",
            "n_images": 16,
            "mode": "train_bn",
            "l1_init": scores[0],
            "l1_final": scores[-1],
            "check_every": 1,
            "curve": [
                {"epoch": e, "score": s, "weights_rel_l2": r} for e, (s, r) in enumerate(zip(scores, rel))
            ],
        },
        "weights": {"rel_l2": rel[-1], "min_rel_l2": rel[-1] / 4, "min_param": min_param},
    }


def test_learning_curve_table_and_summary():
    from unetprune.report.markdown import learning_summary
    from unetprune.report import learning_curve_table

    scores = [0.8, 0.5, 0.4, 0.35, 0.33, 0.32, 0.318, 0.317, 0.3165]
    rel = [0.0, 0.1, 0.15, 0.18, 0.2, 0.21, 0.215, 0.218, 0.22]
    log = _train_log(scores, rel)
    t = learning_curve_table(log)
    assert (
        t.epoch.tolist() == list(range(9)) and t.check.tolist() == scores and t.weights_rel_l2.tolist() == rel
    )
    assert list(t.columns) == [
        "epoch",
        "check",
        "weights_rel_l2",
        "lr",
        "train_G_GAN",
        "train_G_L1",
        "train_D_real",
        "train_D_fake",
    ]
    assert math.isnan(t.lr.iloc[0]) and t.train_G_L1.iloc[1] == 5.0
    text = learning_summary(log)
    # window = max(2, ceil(0.25 * 8)) = 2 epochs; window means: epochs 5-6 0.319, epochs 7-8 0.31675;
    # gain 0.00225 of a total 0.8 - 0.31675 = 0.48325 -> 0.5%
    assert text == (
        "Learning curve, the trainer's check (mean |G(A) − B| in [−1, 1] units on 16 `val` images, "
        "mode `train_bn`; lower is better): 0.8 before training → 0.3165 after 8 epochs (best 0.3165 at "
        "epoch 8). Mean check over epochs 5–6: 0.319; over epochs 7–8: 0.3167 (an improvement of "
        "0.00225); **plateau**: the last 2 checks gave 0.5% of the total improvement (< 10%, window "
        "means). The generator's weights moved 0.22 (relative L2, ||θ − θ₀|| / ||θ₀||) from their "
        "initialisation; the least-moved weight tensor, `model.down1.weight`, by 0.055."
    )
    # epochs 1-2 0.65, epochs 3-4 0.45: gain 0.2 of 0.8 - 0.45 = 0.35 -> 57.1%
    still = learning_summary(
        _train_log([0.8, 0.7, 0.6, 0.5, 0.4], [0, 0.1, 0.2, 0.3, 0.4], n_epochs=2, n_epochs_decay=2)
    )
    assert (
        "Mean check over epochs 1–2: 0.65; over epochs 3–4: 0.45 (an improvement of 0.2); **still improving**: "
        "the last 2 checks gave 57.1% of the total improvement"
    ) in still
    # one noisy check does not decide: epoch 6 -> 8 alone would read 0.36 -> 0.27 (17% of the total,
    # "still improving"); the window means read 0.32 -> 0.28 (7.7%)
    flat = [0.8, 0.5, 0.4, 0.3, 0.3, 0.28, 0.36, 0.29, 0.27]
    assert "**plateau**: the last 2 checks gave 7.7% of the total" in learning_summary(
        _train_log(flat, [0.0] * 9)
    )
    worse = learning_summary(_train_log([0.8, 0.5, 0.4, 0.3, 0.3, 0.28, 0.26, 0.29, 0.27], [0.0] * 9))
    assert "(a worsening of 0.01); **plateau**: the last 2 checks gave no further improvement" in worse
    assert learning_summary({"imported": True}).startswith("The original was imported from released weights")
    old = {
        "epochs": [{"epoch": 1}],
        "eval": {"split": "test", "n_images": 4, "mode": "train_bn", "l1_init": 0.9, "l1_final": 0.5},
    }
    assert (
        "0.9 before training → 0.5 after 1 epochs (this `train.json` has no per-epoch curve)"
        in learning_summary(old)
    )


def test_learning_curve_figure(tmp_path, captured):
    from unetprune.report import figures

    scores = [0.8, 0.5, 0.4, 0.35, 0.33]
    figures.learning_curve_figure(
        _train_log(scores, [0, 0.1, 0.2, 0.25, 0.3], n_epochs=2, n_epochs_decay=2),
        tmp_path / "learning_curve.png",
    )
    fig = captured["learning_curve"]
    check, loss = fig.axes[0], fig.axes[1]
    line = check.get_lines()[0]
    assert line.get_xdata().tolist() == [0, 1, 2, 3, 4] and line.get_ydata().tolist() == scores
    assert [t.get_text() for t in check.get_legend().get_texts()][:2] == [
        "check score",
        "best 0.33 (epoch 4)",
    ]
    assert sorted(t.get_text() for t in loss.get_legend().get_texts()) == [
        "D_fake",
        "D_real",
        "G_GAN",
        "G_L1",
    ]
    weights = fig.axes[2].get_lines()[0]  # the twin axis: weights moved from init
    assert weights.get_ydata().tolist() == [0, 0.1, 0.2, 0.25, 0.3]
    figures.learning_curve_figure({"imported": True}, tmp_path / "learning_curve.png")
    assert [t.get_text() for t in captured["learning_curve"].axes[0].texts] == [
        "imported weights: not trained here"
    ]
