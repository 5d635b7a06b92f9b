"""Sensitivity-guided pruning to a budget: the knapsack solver, the plan, the latency table, the CLI."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch

from unetprune.checkpoint import generator_from_checkpoint, save_generator
from unetprune.cli import main
from unetprune.family import family_of
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.metrics.complexity import count_all, count_parameters
from unetprune.pruning import PruningError, n_keep, prune
from unetprune.pruning.plan import InfeasibleBudget, degradations, grid_unit, solve_mck
from unetprune.pruning.sensitivity import latency_table, load_sweep

SHAPE = (1, 3, 64, 64)
RATIOS = [0.25, 0.5, 0.75, 0.9]


def brute_force(costs, values, capacity):
    best = None
    for choice in itertools.product(*[range(len(c)) for c in costs]):
        c = sum(costs[i][k] for i, k in enumerate(choice))
        v = sum(values[i][k] for i, k in enumerate(choice))
        if c <= capacity and (best is None or v < best):
            best = v
    return best


@pytest.mark.parametrize("seed", range(40))
def test_solver_equals_brute_force_on_integer_instances(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 5)
    costs = [[rng.randint(0, 30) for _ in range(rng.randint(1, 4))] for _ in range(n)]
    values = [[rng.uniform(-1, 5) for _ in row] for row in costs]
    capacity = rng.randint(sum(min(r) for r in costs), sum(max(r) for r in costs))
    sol = solve_mck(costs, values, capacity)
    assert sol.exact and sol.unit == 1.0
    assert sol.cost <= capacity
    assert sol.value == pytest.approx(brute_force(costs, values, capacity), abs=1e-9)
    assert sol.value == pytest.approx(sum(values[i][k] for i, k in enumerate(sol.choice)))


@pytest.mark.parametrize("seed", range(20))
def test_solver_on_a_coarse_grid_is_feasible_and_loses_at_most_n_cells(seed):
    rng = random.Random(100 + seed)
    n = rng.randint(2, 5)
    costs = [[rng.uniform(0, 1e6) for _ in range(rng.randint(2, 4))] for _ in range(n)]
    values = [[rng.uniform(0, 5) for _ in row] for row in costs]
    capacity = rng.uniform(sum(min(r) for r in costs) + 1e5, sum(max(r) for r in costs))
    sol = solve_mck(costs, values, capacity, max_cells=200)
    assert not sol.exact and sol.unit == pytest.approx(capacity / 200)
    assert sol.cost <= capacity
    # never worse than the best plan that leaves n cells of slack, never better than the true optimum
    assert sol.value <= brute_force(costs, values, capacity - n * sol.unit) + 1e-9
    assert sol.value >= brute_force(costs, values, capacity) - 1e-9


def test_grid_unit_rule():
    assert grid_unit([[1, 2]], 100, max_cells=4096) == 1.0
    assert grid_unit([[1, 2]], 10_000, max_cells=1000) == 10.0
    assert grid_unit([[0.5, 2]], 100, max_cells=50) == 2.0


def test_solver_refuses_an_infeasible_capacity_naming_the_smallest_cost():
    with pytest.raises(InfeasibleBudget, match="smallest reachable cost is 7 > capacity 5") as e:
        solve_mck([[3, 4], [4, 9]], [[0, 1], [0, 1]], 5)
    assert e.value.min_cost == 7
    assert "\n" not in str(e.value)


def test_degradations_are_a_monotone_envelope_from_zero():
    res = {
        "layer": "down3",
        "ratios": [0.25, 0.5, 0.75],
        "metrics": [{"fid": 9.0}, {"fid": 12.0}, {"fid": 11.0}],
        "metrics_full": {"fid": 10.0},
    }
    assert degradations(res, "fid", higher_is_better=False) == ([0.0, 0.25, 0.5, 0.75], [0.0, 0.0, 2.0, 2.0])
    res["metrics"] = [{"psnr": 19.0}, {"psnr": 21.0}, {"psnr": 15.0}]
    res["metrics_full"] = {"psnr": 20.0}
    assert degradations(res, "psnr", higher_is_better=True)[1] == [0.0, 1.0, 1.0, 5.0]


def fake_sweep(g, degradation_of, ratios=RATIOS):
    """A sweep result per layer whose FID degradation at ratio r is ``degradation_of(layer, r)``."""
    fam = family_of(g)
    out = {}
    for name in fam.groups(g):
        out[name] = {
            "layer": name,
            "ratios": list(ratios),
            "metrics": [{"fid": 10.0 + degradation_of(name, r)} for r in ratios],
            "metrics_full": {"fid": 10.0},
            "importance": "l1",
            "seed": 0,
        }
    return out


@pytest.fixture(scope="module")
def unet():
    return build_generator(UNetSpec.reference(6, 8), seed=0).eval()


def outer_sensitive(name, r):
    """Outer layers (down1-3, up2-3) degrade steeply, inner ones barely."""
    level = int(name[-1])
    return r * (10.0 if level <= 3 else 0.1 * level)


@pytest.mark.parametrize("metric", ["params", "macs_physical", "macs_output"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_plan_lands_within_one_percent_of_the_target(unet, metric, fraction):
    full = count_all(unet, SHAPE)[metric]
    target = fraction * full
    new, info = prune(
        unet,
        "plan",
        sweep=fake_sweep(unet, outer_sensitive),
        match_target=target,
        match_metric=metric,
        input_shape=SHAPE,
    )
    measured = count_all(new, SHAPE)[metric]
    assert measured <= target
    assert (target - measured) / target <= 0.01
    assert info["plan"]["measured"] == measured
    assert info["strategy"] == "plan"
    assert count_parameters(new) < count_parameters(unet)


def test_plan_prunes_the_layers_the_sweep_calls_insensitive(unet):
    new, info = prune(
        unet,
        "plan",
        sweep=fake_sweep(unet, outer_sensitive),
        match_target=0.6 * count_parameters(unet),
        match_metric="params",
        input_shape=SHAPE,
    )
    ratios = info["plan"]["ratios"]
    assert all(ratios[g] == 0.0 for g in ("down1", "down2", "down3", "up2", "up3"))
    assert max(ratios[g] for g in ("down5", "down6", "up5", "up6")) > 0
    fam = family_of(new)
    assert fam.layer_width(new, "down1") == 8 and fam.layer_width(new, "up2") == 8
    assert fam.layer_width(new, "down6") == info["plan"]["widths"].get("down6", 64)


def test_plan_refuses_an_unreachable_target_in_one_line(unet):
    sweep = fake_sweep(unet, outer_sensitive)
    floor = {g: n_keep(family_of(unet).layer_width(unet, g), 0.9) for g in sweep}
    smallest = family_of(unet).pruning_ops().width_cost(unet, SHAPE)(floor)["params"]
    with pytest.raises(PruningError, match=f"smallest reachable .* is {smallest:,}") as e:
        prune(
            unet, "plan", sweep=sweep, match_target=0.5 * smallest, match_metric="params", input_shape=SHAPE
        )
    assert "\n" not in str(e.value)


def test_plan_on_a_higher_is_better_metric(unet):
    sweep = fake_sweep(unet, outer_sensitive)
    for res in sweep.values():  # the same curves as PSNR drops
        res["metrics"] = [{"psnr": 30.0 - (m["fid"] - 10.0)} for m in res["metrics"]]
        res["metrics_full"] = {"psnr": 30.0}
    _, info = prune(
        unet,
        "plan",
        sweep=sweep,
        verdict_metric="psnr",
        higher_is_better=True,
        match_target=0.6 * count_parameters(unet),
        match_metric="params",
        input_shape=SHAPE,
    )
    assert all(info["plan"]["ratios"][g] == 0.0 for g in ("down1", "down2", "up2"))


def test_latency_table_and_plan(unet):
    layers = ["down5", "down6", "up6"]
    table = latency_table(unet, layers, [0.5, 0.9], SHAPE, "cpu", threads=1, warmup=1, iters=3)
    assert table["device"] == "cpu" and table["threads"] == 1 and table["input_shape"] == list(SHAPE)
    assert set(table["groups"]) == set(layers)
    assert set(table["groups"]["down5"]["by_width"]) == {str(n_keep(64, 0.5)), str(n_keep(64, 0.9))}
    assert table["full_ms"] > 0
    # a synthetic table makes the plan's arithmetic checkable: each group saves 1 ms per ratio step
    synth = {
        "device": "cpu",
        "device_name": "test",
        "threads": 1,
        "input_shape": list(SHAPE),
        "full_ms": 10.0,
        "groups": {g: {"by_width": {str(n_keep(64, 0.5)): 9.0, str(n_keep(64, 0.9)): 8.0}} for g in layers},
    }
    sweep = fake_sweep(unet, lambda n, r: r * (3.0 if n == "up6" else 1.0), [0.5, 0.9])
    sweep = {g: r for g, r in sweep.items() if g in layers}
    _, info = prune(
        unet,
        "plan",
        sweep=sweep,
        match_target=7.5,
        match_metric="latency_ms",
        latency=synth,
        input_shape=SHAPE,
    )
    plan = info["plan"]
    assert plan["measured"] <= 7.5
    # 2.5 ms of savings needed, so 3 ms: the least degradation (0.5 + 0.9) prunes down5 and down6,
    # one at 0.5 and one at 0.9, and leaves the steeper up6 whole
    assert plan["ratios"]["up6"] == 0.0
    assert sorted([plan["ratios"]["down5"], plan["ratios"]["down6"]]) == [0.5, 0.9]
    assert plan["predicted_degradation"] == pytest.approx(1.4)
    assert plan["measured"] == pytest.approx(7.0)


def test_prune_cli_plan_records_target_and_measurement(unet, tmp_path, capsys):
    ckpt = tmp_path / "g.pt"
    save_generator(ckpt, unet, config={"data": {"crop_size": 64}})
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    for name, res in fake_sweep(unet, outer_sensitive).items():
        (sweep_dir / f"{name}.json").write_text(json.dumps(res))
    assert set(load_sweep(sweep_dir, ["down1", "up6"])) == {"down1", "up6"}
    out = tmp_path / "plan.pt"
    rc = main(
        ["prune", "--checkpoint", str(ckpt), "--strategy", "plan", "--sensitivity-dir", str(sweep_dir),
         "--target-macs", "0.5", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    plan = summary["info"]["plan"]
    g = generator_from_checkpoint(out)
    macs = count_all(g, SHAPE)["macs_physical"]
    assert plan["metric"] == "macs_physical" and plan["achieved"] == macs
    assert plan["target"] == pytest.approx(0.5 * count_all(unet, SHAPE)["macs_physical"])
    assert -0.01 <= plan["rel_error"] <= 0
    capsys.readouterr()
    assert main(["prune", "--checkpoint", str(ckpt), "--strategy", "plan", "--sensitivity-dir", str(sweep_dir),
                 "--out", str(tmp_path / "x.pt")]) != 0  # fmt: skip
    assert "exactly one budget" in capsys.readouterr().err
    assert main(["prune", "--checkpoint", str(ckpt), "--strategy", "plan", "--sensitivity-dir", str(sweep_dir),
                 "--layers", "down9", "--target-params", "0.5", "--out", str(tmp_path / "x.pt")]) != 0  # fmt: skip
    assert "missing sweep result" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_plan_works_for_a_wav2lip_generator():
    from unetprune.families.wav2lip.networks import Wav2LipGenerator, Wav2LipSpec

    torch.manual_seed(0)
    g = Wav2LipGenerator(Wav2LipSpec.reference(0.125)).eval()
    fam = family_of(g)
    shape = fam.input_shape(g)
    sweep = fake_sweep(g, lambda n, r: r * (1 + fam.groups(g).index(n) % 3))
    full = count_parameters(g)
    new, info = prune(
        g, "plan", sweep=sweep, match_target=0.5 * full, match_metric="params", input_shape=shape
    )
    assert 0.99 * 0.5 * full <= count_parameters(new) <= 0.5 * full
    assert info["plan"]["measured"] == count_parameters(new)


def test_latency_plan_through_the_cli_measures_beside_the_prediction(unet, tmp_path):
    from unetprune.commands.sweep import run_latency
    from unetprune.config import load_config

    cfg = load_config(
        None,
        {
            "data": {"crop_size": 64, "load_size": 64},
            "demo": {"image_size": 64},
            "model": {"pix2pix": {"num_downs": 6, "ngf": 8}},
            "sensitivity": {"layers": ["down5", "down6", "up6"], "ratios": [0.5, 0.9]},
        },
    )
    ckpt = tmp_path / "g.pt"
    save_generator(ckpt, unet, config=cfg)
    table_path = tmp_path / "sweep" / "latency-cpu-t1.json"
    table = run_latency(cfg, str(ckpt), "cpu", 1, str(table_path))
    assert json.loads(table_path.read_text())["groups"].keys() == {"down5", "down6", "up6"}
    for name, res in fake_sweep(unet, outer_sensitive, [0.5, 0.9]).items():
        if name in table["groups"]:
            (tmp_path / "sweep" / f"{name}.json").write_text(json.dumps(res))
    full = table["full_ms"]
    floor = full - sum(full - min(g["by_width"].values()) for g in table["groups"].values())
    target = 0.5 * (full + floor)
    out = tmp_path / "lat.pt"
    argv = [
        "prune",
        "--checkpoint",
        str(ckpt),
        "--strategy",
        "plan",
        "--sensitivity-dir",
        str(tmp_path / "sweep"),
    ]
    argv += ["--target-latency-ms", str(target), "--latency-table", str(table_path), "--out", str(out)]
    assert main(argv) == 0
    lat = json.loads(out.with_suffix(".json").read_text())["info"]["plan"]["latency"]
    assert lat["device"] == "cpu" and lat["threads"] == 1 and lat["device_name"] == table["device_name"]
    assert lat["predicted_ms"] <= target and lat["measured_ms"] > 0


def test_plan_variants_in_the_config():
    from unetprune import pipeline
    from unetprune.config import load_config
    from unetprune.errors import ConfigError

    base = {"model": {"pix2pix": {"num_downs": 6, "ngf": 8}}, "sensitivity": {"layers": ["down5", "up5"]}}
    variants = [
        {"strategy": "cut", "k": 2},
        {"strategy": "plan", "match": "cut-k2"},
        {"strategy": "plan", "target": {"macs_output": 0.4}},
        {"strategy": "plan", "target": {"latency_ms": 12.5, "threads": 2}},
    ]
    cfg = load_config(None, {**base, "variants": variants})
    prim = pipeline.primary_variants(cfg)
    assert list(prim) == ["cut-k2", "plan-match-cut-k2", "plan-macs-output0.4", "plan-lat12.5ms-cpu-t2"]
    base_of = {a["reference"] for a in pipeline.baseline_variants(cfg).values()}
    assert base_of == {
        "cut-k2",
        "plan-macs-output0.4",
        "plan-lat12.5ms-cpu-t2",
    }  # a match plan shares cut-k2's
    args = pipeline.prune_cli_args(cfg, "plan-match-cut-k2")
    from unetprune.layout import Layout

    assert args[-2:] == ["--match-params", str(Layout.from_config(cfg).pruned_checkpoint("cut-k2"))]
    assert ["--layers", "down5", "up5"] == args[4:7]
    assert pipeline.latency_tables(cfg) == [("cpu", 2)]
    assert pipeline.plan_inputs(cfg, "plan-lat12.5ms-cpu-t2")[-1].name == "latency-cpu-t2.json"
    assert pipeline.plan_inputs(cfg, "cut-k2") == []
    for bad, where in (
        ({"strategy": "plan", "match": "plan-x"}, "variants[1].match"),
        ({"strategy": "plan", "target": {"params": 0.5, "macs": 0.5}}, "variants[1].target"),
        ({"strategy": "plan", "target": {"params": 0.5}, "k": 1}, "variants[1].k"),
        ({"strategy": "inner", "ratio": 0.5, "target": {"params": 0.5}}, "variants[1].target"),
    ):
        with pytest.raises(ConfigError, match=f"config error at '{re_escape(where)}'"):
            load_config(None, {**base, "variants": [variants[0], bad]})


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_plan_findings_are_phrased_by_significance():
    import pandas as pd

    from unetprune.report.beyond import PLAN_COLUMNS, plan_findings

    rows = [
        ["plan-match-cut-k2", "cut-k2", "cut", "fid", 10.0, 0.5, 14.0, 0.5, "params", 100, 100, "plan-match-cut-k2"],
        ["plan-match-cut-k2", "global-uniform-match-cut-k2", "global-uniform", "fid", 10.0, 0.5, 10.5, 0.5,
         "params", 100, 101, "not resolved"],
    ]  # fmt: skip
    comp = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    comp.attrs["metric"] = "fid"
    head, lines = plan_findings(comp)
    assert head.startswith("Of 2 comparison(s) at equal budget the plan wins 1 and loses 0 beyond the noise")
    assert "**plan-match-cut-k2** is better by 4 FID" in lines[0]
    assert "not resolved at this noise level" in lines[1]
    head, _ = plan_findings(comp.iloc[:1])
    assert head == "The plan beats every model of its budget beyond the noise (1 comparison(s))."
