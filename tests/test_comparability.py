"""The report's comparability section: protocol points derived from the config
and the eval JSONs, for every published number the project quotes."""

from __future__ import annotations

import copy

from types import SimpleNamespace

from unetprune.config import load_config
from unetprune.family import get_family
from unetprune.report.comparability import (
    DIFFERS,
    SAME,
    UNKNOWN,
    assess,
    comparability_section,
    generator_description,
    protocol_rows,
    published,
)
from unetprune.report_text import ReportText, report_text

FULL = "gtFine trainIds (full resolution)"


def _city_eval(**over):
    ev = {
        "split": "val",
        "n_images": 500,
        "image_size": 256,
        "mode": "train_bn",
        "quantize": "truncate",
        "fid": {"value": 50.0, "backend": "inception-v3-compat"},
        "segmentation": {"name": "cityscapes-drn-d-105", "label_source": FULL, "miou": 0.4012},
        "noise": {"seeds": [0, 1, 2], "bootstrap": 200, "metrics": {"miou": {"std": 0.004}}},
        "by_mode": {
            "eval": {
                "mode": "eval",
                "segmentation": {"name": "cityscapes-drn-d-105", "miou": 0.42},
                "noise": {"metrics": {"miou": {"std": 0.005}}},
            }
        },
    }
    ev.update(over)
    return ev


def _pub(key):
    return next(p for p in published(load_config(None, {})) if p.key == key)


def test_every_quoted_number_is_listed_by_its_family():
    cfg = load_config(None, {})
    assert [p.numbers for p in published(cfg)] == [
        "FID 24.12 original → 26.60 compressed",
        "mIoU 42.06 original → 40.77 compressed",
        "mIoU 48.91 at 1.22 G output-based MACs",
        "LSE-D 6.386, LSE-C 7.781 (as published)",
        "FID 4.887 (as published)",
        "LSE-D ≈7.15, LSE-C ≈6.77",
    ]
    assert [p.dataset for p in get_family("pix2pix").comparability_rows(cfg)] == [
        "edges2shoes",
        "cityscapes",
        "cityscapes",
    ]
    assert {p.dataset for p in get_family("wav2lip").comparability_rows(cfg)} == {"lrs2"}
    assert get_family("wav2lip-expert").comparability_rows(cfg) == []


def test_a_family_without_report_text_gets_the_generic_one():
    """The defaults of ReportText describe a family by its name and the core keys only."""
    text = ReportText(SimpleNamespace(name="tiny-gan"))
    cfg = load_config(None, {})
    assert text.generator(cfg) == ("`tiny-gan` generator", "tiny-gan", None)
    assert text.check_score() == "the `tiny-gan` family's check score"
    assert text.bias(cfg) is None and text.sample_span is None
    assert text.config_rows(cfg, "2 + 1")[1] == ("generator", "tiny-gan family")
    # the built-in families describe their generators themselves
    assert generator_description(cfg) == ("U-Net (num_downs 8, ngf 64, batch norm = unet_256)", "unet", 64)
    w2l = load_config("config/wav2lip_demo.yaml")
    assert generator_description(w2l) == ("Wav2Lip generator (width x0.25)", "wav2lip-scaled", None)
    # the Wav2Lip training row says when the sync loss comes on (the demo: boosted until then)
    rows = dict(report_text(get_family("wav2lip")).config_rows(w2l, "24 run (20 + 4 configured)"))
    assert rows["original training"] == (
        "epochs 24 run (20 + 4 configured), batch 4, lr 0.002, Adam betas (0.9, 0.999), sync loss "
        "weight 0.03 once the generated frames' validation sync loss is below 0.75 (0.2 before)"
    )
    # the fine-tuning row names finetune.train's overrides
    from unetprune.report.markdown import _config_summary

    summary = dict(_config_summary(w2l, None).itertuples(index=False, name=None))
    assert summary["fine-tuning"] == "1 + 0 epochs, train.sync_boost 0.03"
    assert (
        dict(_config_summary(cfg, None).itertuples(index=False, name=None))["fine-tuning"] == "50 + 50 epochs"
    )
    over = {"train": {"sync_threshold": 1000, "sync_boost": 0}}
    rows = dict(
        report_text(get_family("wav2lip")).config_rows(load_config("config/wav2lip_demo.yaml", over), "x")
    )
    assert rows["original training"].endswith(
        "weight 0.03 from the first check (sync_threshold 1000: above any sync loss)"
    )
    lrs2 = load_config("config/experiments/wav2lip_lrs2.yaml")
    row = dict(report_text(get_family("wav2lip")).config_rows(lrs2, "x"))["original training"]
    assert row.endswith("sync loss weight 0.01 once the generated frames' validation sync loss is below 0.75")


def test_cityscapes_rows_from_config_and_eval():
    cfg = load_config("config/experiments/pix2pix_cityscapes.yaml")
    rows = {r[0]: r[1:] for r in protocol_rows(_pub("gan-compression-cityscapes-miou"), cfg, _city_eval())}
    assert rows["dataset / split"] == ("cityscapes val", "cityscapes val", SAME)
    assert rows["image count"] == ("500 images", "500 images", SAME)
    assert rows["generator"] == (
        "ResNet generator (resnet_9blocks), not a U-Net",
        "U-Net (num_downs 8, ngf 64, batch norm = unet_256)",
        DIFFERS,
    )
    assert rows["generator mode"] == ("eval", "train_bn (also eval in by_mode)", "in by_mode.eval")
    assert rows["quantisation"] == ("truncate", "truncate", SAME)
    assert rows["metric implementation"][2] == SAME
    # OMGD's U-Net: the kind matches but not the width
    omgd = assess(_pub("omgd-cityscapes-miou"), cfg, _city_eval())
    assert omgd["differs"] == ["generator"] and omgd["via"] == ["by_mode.eval"]
    # the fallback labels, rounding and a missing eval mode each make a point differ
    ev = _city_eval(quantize="round", by_mode=None)
    ev["segmentation"] = {**ev["segmentation"], "label_source": "input colour label maps"}
    a = assess(_pub("omgd-cityscapes-miou"), cfg, ev)
    assert a["differs"] == ["generator", "generator mode", "quantisation", "metric implementation"]
    # an eval JSON from before evaluate.quantize: not recorded
    old = _city_eval()
    del old["quantize"]
    rows = {r[0]: r[1:] for r in protocol_rows(_pub("omgd-cityscapes-miou"), cfg, old)}
    assert rows["quantisation"][2] == UNKNOWN


def test_edges2shoes_fid_backend_and_a_matching_ngf16_unet():
    cfg = load_config("config/experiments/pix2pix_edges2shoes.yaml")
    ev = _city_eval(split="val", n_images=200, fid={"value": 30.0, "backend": "pytorch-fid-compat"})
    a = assess(_pub("gan-compression-edges2shoes-fid"), cfg, ev)
    assert a["differs"] == ["generator"]
    ev["fid"]["backend"] = "inception-v3-compat"
    assert assess(_pub("gan-compression-edges2shoes-fid"), cfg, ev)["differs"] == [
        "generator",
        "metric implementation",
    ]
    # a cityscapes run of an ngf-16 U-Net evaluated in eval mode matches OMGD's protocol point by point
    city = copy.deepcopy(load_config("config/experiments/pix2pix_cityscapes.yaml"))
    city["model"]["pix2pix"]["ngf"] = 16
    a = assess(_pub("omgd-cityscapes-miou"), city, _city_eval(mode="eval", by_mode=None))
    assert a["differs"] == [] and a["verdict"] == "yes"


def test_section_markdown(tmp_path):
    cfg = load_config("config/experiments/pix2pix_cityscapes.yaml")
    md = comparability_section(cfg, {("original", "original"): _city_eval(), ("cut-k2", "finetuned"): {}})
    assert md.startswith("## Comparability with published numbers\n")
    assert (
        "| mIoU 42.06 original → 40.77 compressed | GAN Compression (Li et al., CVPR 2020; "
        "mit-han-lab/gan-compression) | cityscapes val | generator | no: protocols differ |" in md
    )
    assert "| FID 24.12 original → 26.60 compressed |" in md and "no: another dataset / split" in md
    assert "### mIoU 48.91 at 1.22 G output-based MACs — OMGD" in md
    assert (
        "| value | original 42.06, compressed 40.77 | mIoU 40.12 ± 0.40; mIoU 42.00 ± 0.50 (eval, by_mode) "
        "(± = noise std) |  |"
    ) in md
    assert "| generator mode | eval | train_bn (also eval in by_mode) | in by_mode.eval |" in md
    # the demo: no quoted number on its dataset
    demo = comparability_section(
        load_config(None, {}),
        {"original": {"split": "test", "n_images": 32, "image_size": 64, "mode": "train_bn"}},
    )
    assert "No quoted published number is on this run's dataset and split (`demo` test)" in demo
    assert "###" not in demo
    assert "No evaluation found" in comparability_section(cfg, {})


def test_lse_implementation_row_lists_the_protocol_steps_that_differ():
    cfg = load_config("config/experiments/wav2lip_lrs2.yaml")
    pub = _pub("wav2lip-lrs2-lse")
    own = {"lse": {"backend": "standard", "protocol": "own-audio", "differs_from_published": ["audio: own"]}}
    text, status = _row(pub, cfg, own)
    assert status == DIFFERS and text.endswith("protocol own-audio; differs in: audio: own")
    same = {"lse": {"backend": "standard", "protocol": "published", "differs_from_published": []}}
    assert _row(pub, cfg, same) == ("LSE backend standard, protocol published; every step as published", SAME)
    standin = {"lse": {**same["lse"], "backend": "standin"}}
    assert _row(pub, cfg, standin)[1] == DIFFERS
    old = {"lse": {"backend": "standard"}}  # an eval JSON without the protocol record
    assert _row(pub, cfg, old) == ("LSE backend standard, protocol not recorded", DIFFERS)


def _row(pub, cfg, ev):
    rows = {r[0]: r[1:] for r in protocol_rows(pub, cfg, ev)}
    return rows["metric implementation"][1:]
