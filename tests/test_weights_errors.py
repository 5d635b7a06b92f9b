"""Wrong weights files for the evaluation networks: one line naming the file and
what was expected, never a traceback.  Files are synthetic state dicts with the right keys and
shapes, stored as stride-0 views so that they take a few kilobytes."""

from __future__ import annotations

import re

import pytest
import torch

from unetprune.metrics import drn as D
from unetprune.metrics import segmentation as S
from unetprune.families.wav2lip.syncnet import (
    SyncNetColor,
    SyncNetS,
    identify_sync_weights,
    load_syncnet_color_weights,
    load_syncnet_s_weights,
)
from unetprune.families.wav2lip.weights import WeightsFileError


def _shapes_file(path, shapes: dict[str, tuple[int, ...]]):
    torch.save(
        {
            k: (torch.zeros((), dtype=torch.long) if not s else torch.zeros(()).expand(s))
            for k, s in shapes.items()
        },
        path,
    )
    return path


EXPECTED = (
    "(evaluate.drn_weights) is not a drn_d_105 Cityscapes segmenter (DRN-D-105, 19 classes: "
    "drn-d-105_ms_cityscapes.pth of fyu/drn, as GAN Compression uses): "
)


def test_drn_with_20_classes_is_one_line(tmp_path):
    path = _shapes_file(tmp_path / "drn-d-105_20cls.pth", D.expected_shapes("drn_d_105", 20))
    with pytest.raises(S.SegmentationError) as e:
        S.load_drn(path)
    assert str(e.value) == (
        f"{path} {EXPECTED}it holds a DRN-D-105 segmenter with 20 classes "
        f"(seg.weight (20, 512, 1, 1)), expected 19 classes"
    )


def test_drn_d_38_is_one_line(tmp_path):
    path = _shapes_file(tmp_path / "drn_d_38_cityscapes.pth", D.expected_shapes("drn_d_38", 19))
    with pytest.raises(S.SegmentationError) as e:
        S.load_drn(path)
    assert str(e.value) == (
        f"{path} {EXPECTED}it holds a DRN-D-38 segmenter (19 classes), a different "
        f"architecture from the expected DRN-D-105"
    )


def test_drn_other_files_are_one_line(tmp_path):
    # a DRN ImageNet classifier (fyu/drn's drn_d_105-*.pth: layer0.. and fc, no seg head)
    cls = _shapes_file(
        tmp_path / "drn_d_105-12b40979.pth",
        {"layer0.0.weight": (16, 3, 7, 7), "layer1.0.weight": (16, 16, 3, 3), "fc.weight": (1000, 512, 1, 1)},
    )
    with pytest.raises(S.SegmentationError) as e:
        S.load_drn(cls)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{cls} {EXPECTED}it looks like a DRN ImageNet classifier")
    assert re.search(
        r"\d+ missing keys \(e\.g\. base\.0\.0\.weight\); 3 unexpected keys \(e\.g\. layer0\.0\.weight\)$",
        msg,
    )
    # one tensor of the right architecture with a wrong shape
    shapes = D.expected_shapes("drn_d_105", 19)
    shapes["base.7.0.weight"] = (512, 2048, 1, 1)
    odd = _shapes_file(tmp_path / "odd.pth", shapes)
    with pytest.raises(
        S.SegmentationError,
        match=re.escape(
            "1 wrong shapes (e.g. base.7.0.weight: (512, 2048, 1, 1), expected (512, 2048, 3, 3))"
        ),
    ):
        S.load_drn(odd)
    # not a state dict at all
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(
        S.SegmentationError, match=r"list\.pth \(evaluate\.drn_weights\) does not hold a state dict"
    ):
        S.load_drn(tmp_path / "list.pth")
    # the right layout still loads (up.weight optional, as in the released file)
    good = {k: s for k, s in D.expected_shapes("drn_d_105", 19).items() if k != "up.weight"}
    m = S.load_drn(_shapes_file(tmp_path / "drn-d-105_ms_cityscapes.pth", good))
    assert m.classes == 19 and not m.training


def _reference_syncnet_color_shapes() -> dict[str, tuple[int, ...]]:
    """SyncNet_color's reference names (``face_encoder.N.conv_block.{0,1}.X``) and shapes."""
    with torch.device("meta"):
        net = SyncNetColor()
    out = {}
    for k, v in net.state_dict().items():
        head, idx, kind, leaf = k.split(".", 3)
        out[f"{head}.{idx}.conv_block.{0 if kind == 'conv' else 1}.{leaf}"] = tuple(v.shape)
    return out


def _s_reference_shapes() -> dict[str, tuple[int, ...]]:
    from unetprune.families.wav2lip.syncnet import _S_RENAME

    back = {v: k for k, v in _S_RENAME.items()}
    with torch.device("meta"):
        net = SyncNetS()
    return {
        f"{back[k.split('.', 1)[0]]}.{k.split('.', 1)[1]}": tuple(v.shape)
        for k, v in net.state_dict().items()
    }


def test_wrong_syncnet_files_name_what_they_are(tmp_path):
    expert = _shapes_file(tmp_path / "lipsync_expert.pth", _reference_syncnet_color_shapes())
    s_file = _shapes_file(tmp_path / "syncnet_v2.model", _s_reference_shapes())
    # the training expert given as the LSE network
    with pytest.raises(WeightsFileError) as e:
        load_syncnet_s_weights(expert)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(
        f"{expert}: expected a syncnet_python S state dict (syncnet_v2.model) (this file is Wav2Lip's lip-sync "
        f"expert SyncNet_color (lipsync_expert.pth: the training loss's discriminator)); not a syncnet_python S"
    )
    # the LSE network given as the training expert
    with pytest.raises(WeightsFileError) as e:
        load_syncnet_color_weights(s_file)
    assert str(e.value).startswith(
        f"{s_file}: expected a reference SyncNet_color (lip-sync expert, lipsync_expert.pth) checkpoint (this file "
        f"is syncnet_python's S (syncnet_v2.model: the LSE-D/LSE-C network)); not a SyncNet_color state dict"
    )
    # an LSE stand-in given to the standard backend (it would load: its weights are an S)
    standin = tmp_path / "lse_standin.pt"
    torch.save(
        {
            "format": "unetprune-lse-standin",
            "format_version": 1,
            "state_dict": torch.load(s_file, weights_only=True),
        },
        standin,
    )
    with pytest.raises(
        WeightsFileError,
        match=re.escape(
            f"{standin}: expected syncnet_python's S (syncnet_v2.model) for the standard LSE backend, but this "
            f"file is an unetprune LSE stand-in checkpoint: use the stand-in backend"
        ),
    ):
        load_syncnet_s_weights(standin)
    assert identify_sync_weights({"face_encoder_blocks.0.0.conv_block.0.weight": torch.zeros(1)}) == (
        "a Wav2Lip generator (wav2lip.pth / wav2lip_gan.pth)"
    )
    assert identify_sync_weights({"x": torch.zeros(1)}) is None and identify_sync_weights([1]) is None
    # syncnet_v2.model given to the stand-in backend
    from unetprune.families.wav2lip.lse import LSEError, load_standin

    with pytest.raises(
        LSEError,
        match=re.escape(
            "no 'unetprune-lse-standin' header; this file is syncnet_python's "
            "S (syncnet_v2.model: the LSE-D/LSE-C network); make one with"
        ),
    ):
        load_standin(s_file)
