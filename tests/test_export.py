"""ONNX export (unetprune.export, `unetprune export`) and the ONNX Runtime latency entry.

The original and every variant of the tiny demo configs (pix2pix and Wav2Lip) are built in
process with the pruning operations and exported; ONNX Runtime must reproduce PyTorch's output
within 1e-4 (max abs) at batch 1 and at another batch size (the batch axis is dynamic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetprune import pipeline
from unetprune.checkpoint import save_generator
from unetprune.cli import main
from unetprune.config import load_config
from unetprune.export import (
    DEFAULT_OPSET,
    ExportError,
    export_onnx,
    max_abs_difference,
    onnx_bytes,
    ort_session,
    random_inputs,
    read_metadata,
)
from unetprune.family import family_for_config
from unetprune.pruning import prune

ROOT = Path(__file__).resolve().parents[1]
TINY = {"pix2pix": ROOT / "config" / "tiny.yaml", "wav2lip": ROOT / "config" / "wav2lip_tiny.yaml"}
EXPECTED_INPUTS = {"pix2pix": ["input"], "wav2lip": ["face", "mel"]}


def _synthetic_sweep(fam, g) -> dict:
    """A sensitivity sweep result per prunable group (the plan's input) whose degradation grows
    with the ratio and with the group's position: the plan code then chooses its own widths."""
    ratios = [0.25, 0.5, 0.75]
    return {
        layer: {
            "layer": layer,
            "ratios": ratios,
            "metrics": [{"fid": 1.0 + (i + 1) * r} for r in ratios],
            "metrics_full": {"fid": 1.0},
            "importance": "l1",
            "seed": 0,
        }
        for i, layer in enumerate(fam.groups(g))
    }


def _models(cfg: dict) -> dict[str, torch.nn.Module]:
    """The original and every configured variant (primary, plan, distilled and matched baselines),
    built in process with the pruning operations from a seeded original.  A plan variant is
    planned from a synthetic sweep (:func:`_synthetic_sweep`; the workflow's comes from the real
    sweep, so its widths differ, its operations do not); a distilled variant has its base
    variant's architecture (distillation only changes fine-tuning)."""
    fam = family_for_config(cfg)
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    # BatchNorm running statistics away from (0, 1), so eval mode really uses them
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    shape = fam.counting_shape(g, cfg["data"].get("crop_size"))
    out = {pipeline.ORIGINAL: g}
    for name, v in pipeline.all_variants(cfg).items():
        if v["strategy"] == "plan":
            out[name], _ = prune(
                g,
                "plan",
                match_model=out[v["match"]],
                match_metric="params",
                sweep=_synthetic_sweep(fam, g),
                input_shape=shape,
            )
        elif v.get("reference"):
            kw = dict(
                match_model=out[v["reference"]],
                match_metric=v["match"],
                importance=v["importance"],
                input_shape=shape,
                strict=False,
            )
            if v["strategy"] == "global-threshold":
                kw.update(normalize=v["normalize"], max_layer_ratio=v["max_layer_ratio"])
            out[name], _ = prune(g, v["strategy"], **kw)
        else:
            args = {k: val for k, val in v.items() if k in ("ratio", "levels", "k", "unit")}
            out[name], _ = prune(g, v["strategy"], input_shape=shape, **args)
    return out


@pytest.fixture(scope="module", params=sorted(TINY))
def family_models(request):
    cfg = load_config(TINY[request.param])
    return request.param, cfg, _models(cfg)


def test_ort_equals_pytorch_for_original_and_every_variant(family_models):
    family, cfg, models = family_models
    assert set(models) == {pipeline.ORIGINAL, *pipeline.all_variants(cfg)}
    widths = {json.dumps(family_for_config(cfg).widths(m), sort_keys=True) for m in models.values()}
    distilled = [n for n, v in pipeline.all_variants(cfg).items() if v.get("distill")]
    assert len(widths) == len(models) - len(distilled)  # each variant is another architecture
    for name, g in models.items():
        if name in distilled:  # its base variant's architecture and (untrained here) weights
            continue
        exp = onnx_bytes(g, cfg["data"].get("crop_size"))
        assert [n for n, _ in exp.inputs] == EXPECTED_INPUTS[family], name
        sess = ort_session(exp.model, threads=1)
        assert [i.name for i in sess.get_inputs()] == EXPECTED_INPUTS[family]
        assert [o.name for o in sess.get_outputs()] == ["output"]
        assert all(i.shape[0] == "batch" for i in sess.get_inputs()), name
        for batch in (1, 3):
            feeds = random_inputs(exp.inputs, batch, seed=batch)
            diff = max_abs_difference(g, exp.model, feeds, threads=1)
            assert diff <= 1e-4, f"{family} {name} batch {batch}: ORT vs PyTorch max abs {diff}"
        assert g.training  # the generator itself was not switched to eval mode


def test_export_metadata_states_opset_family_and_inputs(family_models, tmp_path):
    family, cfg, models = family_models
    g = models[pipeline.ORIGINAL]
    out = tmp_path / "m.onnx"
    info = export_onnx(g, out, cfg["data"].get("crop_size"), metadata={"note": "x"})
    assert out.is_file() and info["bytes"] == out.stat().st_size
    assert info["opset"] == DEFAULT_OPSET and info["max_abs_diff"] <= 1e-4
    meta = read_metadata(out)
    assert meta["unetprune.opset"] == str(DEFAULT_OPSET)
    assert meta["unetprune.family"] == family
    assert meta["note"] == "x"
    names = [n for n, _ in json.loads(meta["unetprune.inputs"])]
    assert names == EXPECTED_INPUTS[family]
    assert all(s[0] == -1 for _, s in json.loads(meta["unetprune.inputs"]))
    fam = family_for_config(cfg)
    assert fam.widths(fam.build(fam.spec_from_dict(json.loads(meta["unetprune.spec"])))) == fam.widths(g)
    import onnx

    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary file left


def test_export_refuses_a_mismatch_and_writes_nothing(family_models, tmp_path):
    _, cfg, models = family_models
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(models[pipeline.ORIGINAL], out, cfg["data"].get("crop_size"), tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", sorted(TINY))
def test_cli_export_states_opset_and_refuses_the_checkpoint_as_out(family, tmp_path, capsys):
    cfg = load_config(TINY[family])
    fam = family_for_config(cfg)
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    ckpt = tmp_path / "generator.pt"
    save_generator(ckpt, g, config=cfg)
    out = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(ckpt), "--out", str(out), "--json", str(tmp_path / "e.json")]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"opset {DEFAULT_OPSET}" in said and "max abs diff" in said
    for name in EXPECTED_INPUTS[family]:
        assert f"{name} (-1," in said
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["family"] == family and summary["opset"] == DEFAULT_OPSET
    from unetprune.fileio import sha256_file

    assert read_metadata(out)["unetprune.checkpoint_sha256"] == sha256_file(ckpt)
    feeds = random_inputs(summary_inputs(summary), 2, seed=5)
    assert max_abs_difference(g, out, feeds) <= 1e-4

    before = ckpt.read_bytes()
    link = tmp_path / "link.pt"
    link.symlink_to(ckpt)
    for bad in (ckpt, link):
        assert main(["export", "--checkpoint", str(ckpt), "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "is the checkpoint" in err and "--out" in err
    assert ckpt.read_bytes() == before


def summary_inputs(summary: dict) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(1 if s == -1 else s for s in shape)) for n, shape in summary["inputs"]]


def test_ort_latency_entry_beside_the_eager_one():
    from unetprune.metrics.complexity import complexity_report, measure_ort_latency

    cfg = load_config(TINY["wav2lip"])
    fam = family_for_config(cfg)
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    shape = fam.counting_shape(g)
    e = measure_ort_latency(g, shape, threads=1, warmup=1, iters=3)
    assert e["device"] == "cpu" and e["mode"] == "onnxruntime" and e["threads"] == 1
    assert e["batch"] == 1 and e["iters"] == 3 and e["median_ms"] > 0
    assert e["opset"] == DEFAULT_OPSET and e["runtime"].startswith("onnxruntime ")
    assert g.training
    rep = complexity_report(g, shape, latency=True, threads=1, warmup=1, iters=2)
    by_mode = {(x["device"], x["mode"]): x for x in rep["latency"]}
    assert by_mode[("cpu", "eager")]["threads"] == by_mode[("cpu", "onnxruntime")]["threads"] == 1
    assert [x["mode"] for x in complexity_report(g, shape, threads=1, iters=1, onnx=False)["latency"]][
        :1
    ] == ["eager"]
    assert "onnxruntime" not in {
        x["mode"] for x in complexity_report(g, shape, threads=1, iters=1, onnx=False)["latency"]
    }


def test_ort_latency_times_the_exported_file_and_refuses_another_generators(tmp_path):
    """The evaluation times the export job's file instead of exporting again; a file exported from
    a different generator (another spec) is refused with a one-line error naming the file."""
    from unetprune.metrics.complexity import complexity_report, measure_ort_latency

    cfg = load_config(TINY["wav2lip"])
    fam = family_for_config(cfg)
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    shape = fam.counting_shape(g)
    out = tmp_path / "g.onnx"
    export_onnx(g, out)
    e = measure_ort_latency(g, shape, threads=1, warmup=1, iters=2, onnx_file=out)
    assert e["source"] == str(out) and e["opset"] == DEFAULT_OPSET and e["median_ms"] > 0
    assert measure_ort_latency(g, shape, threads=1, warmup=0, iters=1)["source"] == "exported here"
    rep = complexity_report(g, shape, threads=1, warmup=0, iters=1, onnx_file=out)
    assert [x["source"] for x in rep["latency"] if x["mode"] == "onnxruntime"] == [str(out)]
    pcfg = load_config(TINY["pix2pix"])
    pfam = family_for_config(pcfg)
    other = pfam.build(pfam.spec_from_config(pcfg), seed=0)
    with pytest.raises(ExportError, match=r"g\.onnx was not exported from this generator") as err:
        measure_ort_latency(other, pfam.counting_shape(other), threads=1, iters=1, onnx_file=out)
    assert "\n" not in str(err.value)


def test_ort_latency_reaches_the_main_table_numbers():
    from unetprune.report.load import cpu_latency_ms, ort_latency_ms

    result = {
        "complexity": {
            "latency": [
                {"device": "cpu", "mode": "eager", "median_ms": 2.5},
                {"device": "cpu", "mode": "onnxruntime", "median_ms": 1.25},
            ]
        }
    }
    assert cpu_latency_ms(result) == 2.5 and ort_latency_ms(result) == 1.25
    assert np.isnan(ort_latency_ms({"complexity": {"latency": result["complexity"]["latency"][:1]}}))


@pytest.mark.parametrize("name", ["tinyfam"])
def test_a_family_from_outside_the_repository_exports_through_the_default_hook(name):
    """A family that defines no export hook of its own (tests/thirdfamily) is exported with the
    inputs its pyfunc_inputs names, and ONNX Runtime reproduces it."""
    from unetprune.family import get_family

    fam = get_family(name)
    assert "export_inputs" not in type(fam).__dict__  # the default hook of ModelFamily
    g = fam.build(fam.spec_type.reference(3, 8), seed=0)  # 3 levels, width 8
    exp = onnx_bytes(g, 32)
    assert [n for n, _ in exp.inputs] == [n for n, _ in fam.pyfunc_inputs(32)]
    assert exp.metadata["unetprune.family"] == name
    assert max_abs_difference(g, exp.model, random_inputs(exp.inputs, 2), threads=1) <= 1e-4


def test_an_opset_the_exporter_cannot_reach_is_refused_not_mislabelled(tmp_path):
    """PyTorch's exporter falls back to its own opset when it cannot convert down; the export
    says so instead of writing a file whose metadata names an opset it does not have."""
    cfg = load_config(TINY["pix2pix"])
    fam = family_for_config(cfg)
    g = fam.build(fam.spec_from_config(cfg), seed=0)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"at opset 7 gave opset \d+ .*choose --opset"):
        export_onnx(g, out, 32, opset=7)
    assert not out.exists()


@pytest.mark.slow
def test_the_workflow_exports_the_original(tmp_path):
    """The export job of the tiny DAG (after its data and training jobs) writes the original's ONNX
    file, which ONNX Runtime runs equal to the trained checkpoint."""
    from test_workflow import smk, workflow_copy

    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.layout import Layout

    wf = workflow_copy(tmp_path / "wf")
    cfg = load_config(wf / "config" / "tiny.yaml")
    lay = Layout.from_config(cfg, wf / "results")
    target = lay.onnx_model(pipeline.ORIGINAL)
    smk(wf, str(target.relative_to(wf)), "--cores", "2", "--configfile", "config/tiny.yaml")
    meta = read_metadata(target)
    assert meta["unetprune.opset"] == str(DEFAULT_OPSET) and meta["unetprune.family"] == "pix2pix"
    g = generator_from_checkpoint(lay.checkpoint(pipeline.ORIGINAL))
    feeds = random_inputs([("input", (1, 3, 32, 32))], 2, seed=1)
    assert max_abs_difference(g, target, feeds) <= 1e-4
    assert (lay.log("export_original")).read_text().startswith("exported pix2pix to ")
