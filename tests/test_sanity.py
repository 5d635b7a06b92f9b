"""The sanity gate: the original against the trivial generators of its task.

A deliberately untrained original cannot beat the untrained generator of another seed beyond
the noise, so the gate fires; a synthetic evaluation that beats every trivial generator passes;
the report's first finding, metrics.json and the findings' marks follow the gate."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from unetprune.layout import ORIGINAL, Layout
from unetprune.report.verdicts import sanity_gate


def _eval(fid, fid_std, lse_c=None, lse_std=None, sanity=None):
    metrics = {"fid": {"std": fid_std}}
    r = {"fid": {"value": fid}, "noise": {"seeds": [0], "bootstrap": 50, "metrics": metrics}}
    if lse_c is not None:
        r["lse"] = {"lse_c": lse_c, "lse_d": 8.0}
        metrics["lse_c"] = {"std": lse_std}
    if sanity is not None:
        r["sanity"] = {"generators": sanity}
    return r


def _trivial(fid, fid_std, lse_c=None, lse_std=None):
    m, s = {"fid": fid}, {"fid": fid_std}
    if lse_c is not None:
        m["lse_c"], s["lse_c"] = lse_c, lse_std
    return {"description": "a trivial generator", "metrics": m, "std": s}


def test_gate_on_synthetic_numbers():
    # FID 0.3 ± 0.05 against 0.8 ± 0.05 (difference 0.5, 2σ = 0.141): passes
    ok = sanity_gate(_eval(0.3, 0.05, sanity={"copy-input": _trivial(0.8, 0.05)}), ["fid"])
    assert ok["passed"] is True and ok["failed"] == [] and ok["metrics"] == ["fid"]
    c = ok["checks"][0]
    assert c["advantage"] == pytest.approx(0.5) and c["std"] == pytest.approx(0.05 * 2**0.5) and c["beats"]
    # better, but within the noise: does not beat it, the gate fires
    near = sanity_gate(_eval(0.3, 0.05, sanity={"mean-target": _trivial(0.38, 0.05)}), ["fid"])
    assert near["passed"] is False and near["failed"] == ["mean-target on fid"]
    # the lip-sync check: better FID but the copy's LSE-C (higher is better) wins
    lip = sanity_gate(
        _eval(0.3, 0.05, lse_c=1.1, lse_std=0.1, sanity={"copy-reference": _trivial(0.9, 0.05, 1.6, 0.1)}),
        ["fid", "lse_c"],
    )
    assert lip["passed"] is False and lip["failed"] == ["copy-reference on lse_c"]
    assert [c["beats"] for c in lip["checks"]] == [True, False]
    # a trivial generator that outputs real frames is the FID floor: not compared on it, only on
    # lip sync, and the gate says so
    real = _trivial(0.0, 0.01, 1.6, 0.1)
    real["not_compared"] = {"fid": "its outputs are real frames"}
    floor = sanity_gate(
        _eval(0.3, 0.05, lse_c=3.0, lse_std=0.1, sanity={"copy-reference": real}), ["fid", "lse_c"]
    )
    assert floor["passed"] is True and [c["metric"] for c in floor["checks"]] == ["lse_c"]
    assert floor["not_compared"] == [
        {"trivial": "copy-reference", "metric": "fid", "why": "its outputs are real frames"}
    ]
    # ... and still fails where lip sync does not beat it
    real["metrics"]["lse_c"] = 2.9
    assert sanity_gate(
        _eval(0.3, 0.05, lse_c=3.0, lse_std=0.1, sanity={"copy-reference": real}), ["fid", "lse_c"]
    )["failed"] == ["copy-reference on lse_c"]
    # no sanity block: not checked
    assert sanity_gate(_eval(0.3, 0.05), ["fid"]) is None
    # unknown noise: the point values decide
    pt = sanity_gate(_eval(0.3, None, sanity={"untrained": _trivial(0.31, None)}), ["fid"])
    assert pt["passed"] is True and pt["checks"][0]["std"] is None


def test_trivial_generators_of_the_image_family(tiny_demo):
    from unetprune.config import load_config
    from unetprune.data.aligned import from_uint8
    from unetprune.family import family_for_config
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator
    from unetprune.evaluate import EvalSet

    cfg = load_config(
        None,
        {
            "experiment": "s",
            "data": {"dataset": "demo", "crop_size": 32, "load_size": 32, "root": str(tiny_demo)},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 8}},
        },
    )
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=0)
    gens = family_for_config(cfg).trivial_generators(cfg, g, tiny_demo)
    assert list(gens) == ["copy-input", "mean-target", "untrained"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(gens["copy-input"][0](x), x)
    train = EvalSet.load(cfg, "train", tiny_demo)
    mean = from_uint8(train.targets).double().mean(0, keepdim=True).float()
    out = gens["mean-target"][0](x)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out[1:], mean, atol=1e-6)
    untrained = gens["untrained"][0]
    assert sum(p.numel() for p in untrained.parameters()) == sum(p.numel() for p in g.parameters())
    assert not torch.equal(next(untrained.parameters()), next(g.parameters()))  # another seed


def test_copy_reference_returns_the_reference_half():
    from unetprune.families.wav2lip.trivial import CopyReference

    face = torch.rand(2, 6, 8, 8)
    assert torch.equal(CopyReference()(face, torch.zeros(2, 1, 80, 16)), face[:, 3:6])
    with pytest.raises(ValueError, match="expected faces"):
        CopyReference()(face[:, :3], None)


@pytest.fixture(scope="module")
def untrained_tree(results_tree, tmp_path_factory):
    """A copy of the tiny tree whose original is replaced by an untrained generator, evaluated
    by `unetprune evaluate --sanity` and reported."""
    from unetprune.checkpoint import load_checkpoint
    from unetprune.cli import main
    from unetprune.family import family_for_config

    cfg, src, cfg_file = results_tree
    base = tmp_path_factory.mktemp("untrained-tree") / "results"
    shutil.copytree(src, base)
    lay = Layout.from_config(cfg, base)
    ckpt = load_checkpoint(lay.checkpoint(ORIGINAL))
    fam = family_for_config(cfg)
    fresh = fam.build(fam.spec_from_config(cfg), init=True, seed=7)
    ckpt["generator"]["state_dict"] = fresh.state_dict()
    torch.save(ckpt, lay.checkpoint(ORIGINAL))
    args = ["evaluate", "--config", str(cfg_file), "--checkpoint", str(lay.checkpoint(ORIGINAL))]
    args += [
        "--cache-dir",
        str(lay.fid_cache),
        "--no-latency",
        "--sanity",
        "--out",
        str(lay.eval_json(ORIGINAL)),
    ]
    assert main(args) == 0
    assert main(["report", "--config", str(cfg_file), "--results", str(base)]) == 0
    return cfg, lay, base


def test_an_untrained_original_fires_the_gate(untrained_tree):
    cfg, lay, _ = untrained_tree
    ev = json.loads(lay.eval_json(ORIGINAL).read_text())
    gens = ev["sanity"]["generators"]
    assert list(gens) == ["copy-input", "mean-target", "untrained"]
    assert all("fid" in g["metrics"] and g["std"]["fid"] > 0 for g in gens.values())
    gate = sanity_gate(ev, ["fid"])
    assert gate["passed"] is False and "untrained on fid" in gate["failed"]
    assert json.loads(lay.metrics_json.read_text())[ORIGINAL]["sanity_passed"] is False
    md = lay.report_md.read_text()
    first = md.split("## Findings\n\n", 1)[1]
    assert first.startswith("### Does the original do its task? (sanity gate)\n\n**Sanity gate failed")
    assert "**Every pruning finding below rests on a generator that does not do its task.**" in first
    sens = first.split("### Are the inner layers the prunable ones?\n\n", 1)[1]
    assert sens.startswith("*(Rests on an original that fails the sanity gate: see above.)* ")
    comp = first.split("### Do inner/cut variants beat the matched global baselines?\n\n", 1)[1]
    assert comp.startswith("*(Rests on an original that fails the sanity gate: see above.)* ")


def test_trivial_generators_of_the_lip_sync_family():
    from unetprune.family import get_family

    fam = get_family("wav2lip")
    cfg = {"seed": 3, "model": {"family": "wav2lip", "wav2lip": {"width_mult": 0.125}}}
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    gens = fam.trivial_generators(cfg, g, None)
    assert list(gens) == ["copy-reference", "untrained"] and fam.sanity_metrics(cfg) == ["lse_c", "openness"]
    # copying real frames is the FID/KID floor: compared on lip sync (and paired metrics) only
    assert set(gens["copy-reference"][2]) == {"fid", "kid"} and len(gens["untrained"]) == 2
    face, mel = torch.rand(2, 6, 96, 96), torch.rand(2, 1, 80, 16)
    assert torch.equal(gens["copy-reference"][0](face, mel), face[:, 3:6])
    untrained = gens["untrained"][0].eval()
    with torch.no_grad():
        assert untrained(face, mel).shape == (2, 3, 96, 96)
    assert "seed 4" in gens["untrained"][1]


def test_first_finding_states_the_gate_with_numbers_and_power():
    import math

    from unetprune.report.markdown import sanity_findings

    ev = _eval(0.3, 0.05, sanity={"mean-target": _trivial(0.38, 0.05)})
    ev["n_images"] = 32
    ev["noise"]["scaling"] = {"fid": {"sizes": [8, 16, 32], "std": [0.1, 0.07, 0.05], "exponent": 0.5}}
    gate = sanity_gate(ev, ["fid"])
    text = sanity_findings(gate, ev)
    std = math.hypot(0.05, 0.05)
    need = math.ceil(32 * (std / (gate["checks"][0]["advantage"] / 2)) ** 2)
    assert text.startswith(
        "**Sanity gate failed — the original does not do its task**: it does not beat mean-target on FID"
    )
    assert f"FID 0.3 vs mean-target 0.38: the original is better by 0.08 (within 2σ = {2 * std:.3g})" in text
    found = re.search(r"about (\d+) images \(now 32\) would resolve it", text)
    assert found and int(found.group(1)) in (need, need + 1)  # 32 · (σ / (Δ/2))² = 100 up to float rounding
    assert text.endswith("**Every pruning finding below rests on a generator that does not do its task.**")
    ok = sanity_findings(
        sanity_gate(_eval(0.3, 0.05, sanity={"copy-input": _trivial(0.8, 0.05)}), ["fid"]), ev
    )
    assert ok.startswith("**Sanity gate passed**: the original beats every trivial generator of its task")
    assert "the original is better by 0.5 (beyond 2σ = 0.141)" in ok
    assert sanity_findings(None, ev).startswith("The original's evaluation scored no trivial generator")
    real = _trivial(0.0, 0.01, 1.6, 0.1)
    real["not_compared"] = {"fid": "its outputs are real frames"}
    lip = _eval(0.3, 0.05, lse_c=3.0, lse_std=0.1, sanity={"copy-reference": real})
    text = sanity_findings(sanity_gate(lip, ["fid", "lse_c"]), lip)
    assert text.startswith("**Sanity gate passed**")
    assert "copy-reference is not compared on FID: its outputs are real frames." in text


def test_the_original_mlflow_run_carries_the_flag(untrained_tree, tmp_path):
    from mlflow import MlflowClient

    from unetprune.tracking import sync

    cfg, _, base = untrained_tree
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync(cfg, base, uri=uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg["experiment"])
    runs = client.search_runs([exp.experiment_id], filter_string="tags.mlflow.runName = 'original'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["sanity_passed"] == "False" and run.data.metrics["sanity_passed"] == 0.0
    assert "untrained on fid" in run.data.params["sanity_failed"]
