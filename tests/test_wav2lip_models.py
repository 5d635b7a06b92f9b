"""Wav2Lip models (generator, expert SyncNet, quality discriminator, syncnet_python's S),
their reference-checkpoint loaders and the audio front-end.

The counts are the issue's facts, measured on the reference code (docs/method.md, Wav2Lip).
The reference state dicts are synthesised here in the reference key layout — written out
from the reference module trees by hand, independently of the library's own key mapping —
and spot-checked against known reference keys and shapes; nothing is downloaded.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unetprune import audio as A
from unetprune.families.wav2lip.syncnet import (
    SyncNetColor,
    SyncNetS,
    SyncNetSpec,
    Wav2LipDiscQual,
    load_disc_qual_weights,
    load_reference_disc_qual_state_dict,
    load_syncnet_color_weights,
    load_syncnet_s_weights,
)
from unetprune.families.wav2lip.networks import (
    Wav2LipGenerator,
    Wav2LipSpec,
    build_wav2lip,
    count_complexity,
    stage_parameters,
)
from unetprune.families.wav2lip.weights import (
    WeightsFileError,
    load_reference_wav2lip_state_dict,
    load_wav2lip_weights,
)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights AND BatchNorm statistics, so that a wrong mapping cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if t.dtype.is_floating_point:
                r = torch.rand(t.shape, generator=g)
                t.copy_(r * 0.5 + 0.5 if name.endswith("running_var") else (r - 0.5) * 0.2)
            else:
                t.fill_(3)
    return m


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return Wav2LipGenerator(Wav2LipSpec.reference()).eval()


# ------------------------------------------------------------------------------------------
# generator: counts, MACs, forward
# ------------------------------------------------------------------------------------------

FE = [4_752, 23_328, 129_792, 369_792, 1_476_864, 3_542_016, 2_624_512]
FD = [263_680, 7_080_960, 9_441_792, 5_311_872, 2_361_600, 664_704, 166_464]


def test_generator_parameter_counts(gen):
    assert n_params(gen) == 36_298_035
    per = stage_parameters(gen)
    assert [per[f"fe{i}"] for i in range(7)] == FE
    assert [per[f"fd{i}"] for i in range(7)] == FD
    assert sum(FE) == 8_171_056 and sum(FD) == 25_291_072
    assert per["audio"] == 2_812_672
    assert per["out"] == 23_235
    assert sum(per.values()) == 36_298_035
    assert gen.stage_names() == (
        ["audio"] + [f"fe{i}" for i in range(7)] + [f"fd{i}" for i in range(7)] + ["out"]
    )
    assert len(gen.audio) == 13


def test_generator_macs(gen):
    c = count_complexity(gen)
    assert c["params"] == 36_298_035
    assert c["macs_physical"] == 3_966_984_192  # 3.97 G per frame
    assert round(c["macs_physical"] / 1e9, 2) == 3.97
    assert c["macs_output"] == 6_202_417_152
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        gen(torch.zeros(1, 6, 96, 96), torch.zeros(1, 1, 80, 16))
    assert fc.get_total_flops() // 2 == c["macs_physical"]


def test_generator_forward_shapes_and_batched_layout(gen):
    torch.manual_seed(1)
    face, mel = torch.rand(2, 6, 96, 96), torch.randn(2, 1, 80, 16)
    with torch.no_grad():
        y = gen(face, mel)
    assert y.shape == (2, 3, 96, 96)
    assert 0.0 <= y.min() and y.max() <= 1.0
    # the reference's (B, C, T, H, W) faces and (B, T, 1, 80, 16) mels → (B, 3, T, H, W)
    faces5, mels5 = torch.rand(2, 6, 3, 96, 96), torch.randn(2, 3, 1, 80, 16)
    with torch.no_grad():
        y5 = gen(faces5, mels5)
        assert y5.shape == (2, 3, 3, 96, 96)
        for t in range(3):
            torch.testing.assert_close(y5[:, :, t], gen(faces5[:, :, t], mels5[:, t]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        gen(faces5, mel)


def test_generator_trains_one_step_small():
    torch.manual_seed(0)
    g = build_wav2lip(Wav2LipSpec.reference(0.25), seed=0)
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    face, mel, target = torch.rand(4, 6, 96, 96), torch.randn(4, 1, 80, 16), torch.rand(4, 3, 96, 96)
    loss = torch.nn.functional.l1_loss(g(face, mel), target)
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())
    opt.step()


def test_spec_round_trip_width_mult_and_cut():
    spec = Wav2LipSpec.reference()
    d = spec.to_dict()
    assert d["name"] == "wav2lip" and d["fe_widths"] == [16, 32, 64, 128, 256, 512, 512]
    assert Wav2LipSpec.from_dict(d) == spec
    small = Wav2LipSpec.reference(0.25)
    assert small.fe_widths == [4, 8, 16, 32, 64, 128, 128] and small.out_widths == [8]
    assert n_params(Wav2LipGenerator(small)) == 2_275_983  # docs/method.md sizing note
    assert Wav2LipSpec.from_dict(small.to_dict()) == small
    # a pruned model is an ordinary model of its spec
    pruned = Wav2LipSpec.from_dict(
        {**d, "fd_widths": [400, 300, 512, 384, 256, 128, 64], "fe_widths": [16, 32, 64, 128, 256, 200, 100]}
    )
    g = Wav2LipGenerator(pruned).eval()
    with torch.no_grad():
        assert g(torch.rand(1, 6, 96, 96), torch.randn(1, 1, 80, 16)).shape == (1, 3, 96, 96)
    # cut inner levels (docs/method.md): k = 1 and 2 counts
    for k, count, stages in ((1, 26_328_883, 6), (2, 13_345_075, 5)):
        gk = Wav2LipGenerator(Wav2LipSpec.reference(cut=k)).eval()
        assert n_params(gk) == count
        assert not hasattr(gk, f"fe{7 - k}") and not hasattr(gk, "fd0") and not hasattr(gk, f"fd{k}")
        assert len(gk.spec.fe_levels) == stages
        with torch.no_grad():
            assert gk(torch.rand(1, 6, 96, 96), torch.randn(1, 1, 80, 16)).shape == (1, 3, 96, 96)
    with pytest.raises(ValueError, match="expected 'wav2lip'"):
        Wav2LipSpec.from_dict({**d, "name": "unet"})
    with pytest.raises(ValueError, match="fe_widths"):
        Wav2LipGenerator(Wav2LipSpec(fe_widths=[16, 32]))
    with pytest.raises(ValueError, match="positive"):
        Wav2LipSpec.reference(0)


# ------------------------------------------------------------------------------------------
# expert, quality discriminator, S
# ------------------------------------------------------------------------------------------


def test_syncnet_color_counts_and_embeddings():
    torch.manual_seed(0)
    s = SyncNetColor().eval()
    assert n_params(s) == 16_435_072
    assert len(s.face_encoder) == 17 and len(s.audio_encoder) == 14
    with torch.no_grad():
        a, v = s(torch.randn(3, 1, 80, 16), torch.rand(3, 15, 48, 96))
    assert a.shape == (3, 512) and v.shape == (3, 512)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    c = count_complexity(s, (1, 1, 80, 16), (1, 15, 48, 96))
    assert round(c["macs_physical"] / 1e9, 2) == 1.21
    small = SyncNetSpec.reference(0.25)
    assert SyncNetSpec.from_dict(small.to_dict()) == small
    with torch.no_grad():
        a, v = SyncNetColor(small).eval()(torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96))
    assert a.shape == v.shape == (2, 128)


def test_disc_qual_counts_and_shapes():
    torch.manual_seed(0)
    d = Wav2LipDiscQual().eval()
    assert n_params(d) == 14_113_793
    with torch.no_grad():
        p = d(torch.rand(2, 3, 96, 96))
        p5 = d(torch.rand(2, 3, 5, 96, 96))
    assert p.shape == (2, 1) and p5.shape == (10, 1)
    assert ((0 < p) & (p < 1)).all()


def test_syncnet_s_counts_and_shapes():
    torch.manual_seed(0)
    s = SyncNetS().eval()
    assert n_params(s) == 13_631_616
    with torch.no_grad():
        assert s.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert s.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
        assert s.forward_lipfeat(torch.rand(1, 3, 5, 224, 224) * 255).shape == (1, 512)


# ------------------------------------------------------------------------------------------
# reference key layouts, written out from the reference module trees
# ------------------------------------------------------------------------------------------


def _ref_block(prefix: str, leaf: str) -> str:
    """Our ``conv.X`` / ``bn.X`` inside a block → the reference ``conv_block.0.X`` / ``.1.X``."""
    kind, _, name = leaf.partition(".")
    return f"{prefix}.conv_block.{0 if kind == 'conv' else 1}.{name}"


def reference_wav2lip_sd(g: Wav2LipGenerator) -> dict:
    out = {}
    for k, v in g.state_dict().items():
        m = re.fullmatch(r"(fe|fd)(\d)\.(\d+)\.(.+)", k)
        if m:
            top = "face_encoder_blocks" if m.group(1) == "fe" else "face_decoder_blocks"
            out[_ref_block(f"{top}.{m.group(2)}.{m.group(3)}", m.group(4))] = v.clone()
            continue
        m = re.fullmatch(r"audio\.(\d+)\.(.+)", k)
        if m:
            out[_ref_block(f"audio_encoder.{m.group(1)}", m.group(2))] = v.clone()
            continue
        m = re.fullmatch(r"out\.0\.(.+)", k)
        if m:
            out[_ref_block("output_block.0", m.group(1))] = v.clone()
            continue
        m = re.fullmatch(r"out\.1\.(weight|bias)", k)
        assert m, k
        out[f"output_block.1.{m.group(1)}"] = v.clone()
    return out


def reference_syncnet_sd(s: SyncNetColor) -> dict:
    out = {}
    for k, v in s.state_dict().items():
        m = re.fullmatch(r"(face_encoder|audio_encoder)\.(\d+)\.(.+)", k)
        out[_ref_block(f"{m.group(1)}.{m.group(2)}", m.group(3))] = v.clone()
    return out


def reference_disc_sd(d: Wav2LipDiscQual) -> dict:
    out = {}
    for k, v in d.state_dict().items():
        m = re.fullmatch(r"d(\d)\.(\d+)\.conv\.(weight|bias)", k)
        if m:
            out[f"face_encoder_blocks.{m.group(1)}.{m.group(2)}.conv_block.0.{m.group(3)}"] = v.clone()
        else:
            out[k.replace("pred.", "binary_pred.0.")] = v.clone()
    return out


def reference_s_sd(s: SyncNetS) -> dict:
    names = {"audio_cnn": "netcnnaud", "audio_fc": "netfcaud", "lip_cnn": "netcnnlip", "lip_fc": "netfclip"}
    return {names[k.split(".")[0]] + k[len(k.split(".")[0]) :]: v.clone() for k, v in s.state_dict().items()}


def test_synthetic_reference_layouts_match_known_keys():
    """The synthesised dicts have the reference's key count and known (key, shape) pairs."""
    w = reference_wav2lip_sd(Wav2LipGenerator())
    # 18 face-encoder + 13 audio + 18 face-decoder + 1 output conv blocks x 7 tensors, + the 1x1 conv
    assert len(w) == (18 + 13 + 18 + 1) * 7 + 2
    for key, shape in {
        "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
        "face_encoder_blocks.2.3.conv_block.1.running_mean": (64,),
        "face_encoder_blocks.6.1.conv_block.0.weight": (512, 512, 1, 1),
        "audio_encoder.3.conv_block.0.weight": (64, 32, 3, 3),
        "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.0.0.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),  # ConvT: (in, out, k, k)
        "face_decoder_blocks.6.2.conv_block.1.num_batches_tracked": (),
        "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
        "output_block.1.weight": (3, 32, 1, 1),
    }.items():
        assert tuple(w[key].shape) == shape, key
    s = reference_syncnet_sd(SyncNetColor())
    assert len(s) == (17 + 14) * 7
    for key, shape in {
        "face_encoder.0.conv_block.0.weight": (32, 15, 7, 7),
        "face_encoder.1.conv_block.0.weight": (64, 32, 5, 5),
        "face_encoder.16.conv_block.0.weight": (512, 512, 1, 1),
        "audio_encoder.11.conv_block.0.weight": (256, 256, 3, 3),
        "audio_encoder.13.conv_block.0.weight": (512, 512, 1, 1),
    }.items():
        assert tuple(s[key].shape) == shape, key
    d = reference_disc_sd(Wav2LipDiscQual())
    assert len(d) == 13 * 2 + 2
    assert tuple(d["face_encoder_blocks.1.0.conv_block.0.weight"].shape) == (64, 32, 5, 5)
    assert tuple(d["binary_pred.0.weight"].shape) == (1, 512, 1, 1)
    S = reference_s_sd(SyncNetS())
    for key, shape in {
        "netcnnaud.0.weight": (64, 1, 3, 3),
        "netcnnaud.18.weight": (512, 256, 5, 4),
        "netcnnaud.19.running_var": (512,),
        "netcnnlip.0.weight": (96, 3, 5, 7, 7),
        "netcnnlip.18.weight": (512, 256, 1, 6, 6),
        "netfcaud.1.running_mean": (512,),
        "netfclip.3.weight": (1024, 512),
    }.items():
        assert tuple(S[key].shape) == shape, key


# ------------------------------------------------------------------------------------------
# loaders: round trips and wrong files
# ------------------------------------------------------------------------------------------


def test_wav2lip_reference_checkpoint_round_trip(tmp_path):
    g1 = randomize(Wav2LipGenerator(), seed=1).eval()
    ref = {"module." + k: v for k, v in reference_wav2lip_sd(g1).items()}  # DataParallel-saved
    path = tmp_path / "wav2lip_gan.pth"
    torch.save(
        {
            "state_dict": ref,
            "optimizer": {"state": {}, "param_groups": []},
            "global_step": 123,
            "global_epoch": 4,
        },
        path,
    )
    g2 = load_wav2lip_weights(path).eval()
    face, mel = torch.rand(2, 6, 96, 96), torch.randn(2, 1, 80, 16)
    with torch.no_grad():
        assert torch.equal(g1(face, mel), g2(face, mel))
    # a bare state dict without the prefix maps the same
    sd = load_reference_wav2lip_state_dict(reference_wav2lip_sd(g1))
    assert all(torch.equal(sd[k], v) for k, v in g1.state_dict().items())
    # a pruned spec loads a reference-layout dict of its own widths
    spec = Wav2LipSpec.reference(0.25)
    gs = randomize(Wav2LipGenerator(spec), seed=2).eval()
    torch.save({"state_dict": reference_wav2lip_sd(gs)}, tmp_path / "small.pth")
    gl = load_wav2lip_weights(tmp_path / "small.pth", spec).eval()
    with torch.no_grad():
        assert torch.equal(gs(face, mel), gl(face, mel))


def test_syncnet_color_round_trip(tmp_path):
    s1 = randomize(SyncNetColor(), seed=3).eval()
    path = tmp_path / "lipsync_expert.pth"
    torch.save(
        {
            "state_dict": {"module." + k: v for k, v in reference_syncnet_sd(s1).items()},
            "optimizer": None,
            "global_step": 1,
            "global_epoch": 1,
        },
        path,
    )
    s2 = load_syncnet_color_weights(path).eval()
    mel, face = torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96)
    with torch.no_grad():
        for x, y in zip(s1(mel, face), s2(mel, face)):
            assert torch.equal(x, y)


def test_disc_qual_round_trip(tmp_path):
    d1 = randomize(Wav2LipDiscQual(), seed=4).eval()
    torch.save({"state_dict": reference_disc_sd(d1)}, tmp_path / "disc.pth")
    d2 = load_disc_qual_weights(tmp_path / "disc.pth").eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(d1(x), d2(x))
    assert set(load_reference_disc_qual_state_dict(reference_disc_sd(d1))) == set(d1.state_dict())


def test_syncnet_s_round_trip(tmp_path):
    s1 = randomize(SyncNetS(), seed=5).eval()
    path = tmp_path / "syncnet_v2.model"
    torch.save(reference_s_sd(s1), path)  # a bare state dict of S
    s2 = load_syncnet_s_weights(path)
    assert not s2.training
    mfcc, frames = torch.randn(2, 1, 13, 20), torch.rand(2, 3, 5, 224, 224) * 255
    with torch.no_grad():
        assert torch.equal(s1.forward_aud(mfcc), s2.forward_aud(mfcc))
        assert torch.equal(s1.forward_lip(frames), s2.forward_lip(frames))


class _NotAllowed:
    pass


def _one_line_error(fn, path, *words):
    with pytest.raises(WeightsFileError) as ei:
        fn(path)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_wrong_files_give_one_line_errors(tmp_path):
    expert = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": reference_syncnet_sd(SyncNetColor())}, expert)
    gen_file = tmp_path / "wav2lip.pth"
    torch.save({"state_dict": reference_wav2lip_sd(Wav2LipGenerator(Wav2LipSpec.reference(0.5)))}, gen_file)
    s_file = tmp_path / "syncnet_v2.model"
    torch.save(reference_s_sd(SyncNetS()), s_file)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file")
    pickled = tmp_path / "object.pth"
    torch.save({"state_dict": _NotAllowed()}, pickled)  # refused by weights_only=True
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)

    # the expert given to the generator loader and vice versa
    _one_line_error(load_wav2lip_weights, expert, "expected a reference Wav2Lip generator", "face_encoder")
    _one_line_error(load_syncnet_color_weights, gen_file, "expected a reference SyncNet_color")
    _one_line_error(load_syncnet_s_weights, expert, "syncnet_python S")
    _one_line_error(load_wav2lip_weights, s_file, "expected a reference Wav2Lip generator", "netcnnaud")
    _one_line_error(load_disc_qual_weights, gen_file, "Wav2Lip_disc_qual")
    # the right architecture at the wrong widths: the shape is named
    _one_line_error(load_wav2lip_weights, gen_file, "has shape (16, 1, 3, 3), expected (32, 1, 3, 3)")
    # unreadable, unsafe, or not a dict
    for loader in (load_wav2lip_weights, load_syncnet_color_weights, load_syncnet_s_weights):
        _one_line_error(loader, junk, "cannot be read")
        _one_line_error(loader, pickled, "cannot be read", "weights_only")
        _one_line_error(loader, tensor, "got Tensor")
        _one_line_error(loader, tmp_path / "missing.pth", "no such weights file")


# ------------------------------------------------------------------------------------------
# audio front-end
# ------------------------------------------------------------------------------------------

SR = 16000


def _chord(n: int = 8000) -> np.ndarray:
    t = np.arange(n) / SR
    return (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 1830 * t)
        + 0.1 * t * np.sin(2 * np.pi * 3100 * t)
    )


def test_mel_shape_range_and_reference_values():
    mel = A.melspectrogram(_chord())
    assert mel.shape == (80, 1 + 8000 // 200) and mel.dtype == np.float32
    assert mel.min() >= -4.0 and mel.max() <= 4.0
    # librosa 0.11 (stft pad_mode='reflect', as librosa 0.7 of the reference) + the reference
    # audio.py formulas, computed once outside this repository
    ref = {9: 1.299684, 11: 0.135637, 38: -3.179967, 40: -1.188373, 42: 1.897477, 44: -2.484198, 0: -4.0}
    for band, v in ref.items():
        assert mel[band, 10] == pytest.approx(v, abs=1e-4), band
    noise = A.melspectrogram(np.random.default_rng(0).uniform(-1, 1, SR))
    assert -4.0 < noise.min() and noise.max() < 4.0  # full-scale noise: inside the range
    assert A.melspectrogram(100 * np.random.default_rng(0).uniform(-1, 1, SR)).max() == 4.0  # clipped
    assert (A.melspectrogram(np.zeros(SR)) == -4.0).all()  # silence is the floor


def test_mel_basis_and_pure_tone_band():
    basis = A.mel_basis()
    assert basis.shape == (80, 401)
    edges = A.mel_band_edges()
    assert edges[0] == pytest.approx(55.0) and edges[-1] == pytest.approx(7600.0)
    for f0 in (300.0, 1000.0, 2500.0, 5000.0):
        t = np.arange(SR) / SR
        mel = A.melspectrogram(0.5 * np.sin(2 * np.pi * f0 * t))
        band = int(np.argmax(mel[:, 5:-5].mean(axis=1)))
        # the loudest band is the one whose triangle peaks nearest the tone
        assert band == int(np.argmin(np.abs(edges[1:-1] - f0))), (f0, band)


def test_window_index_mapping():
    assert [A.mel_window_start(f) for f in (0, 1, 2, 3, 4, 5, 25, 26)] == [0, 3, 6, 9, 12, 16, 80, 83]
    mel = np.arange(80 * 81, dtype=np.float32).reshape(80, 81)  # 1 s at 16 kHz: 81 mel frames
    w = A.crop_mel_window(mel, 5)
    assert w.shape == (80, 16) and w[0, 0] == 16
    assert A.crop_mel_window(mel, 20).shape == (80, 16)  # 64 + 16 = 80 <= 81
    assert A.crop_mel_window(mel, 21) is None  # 67 + 16 > 81
    seg = A.segmented_mels(mel, 3)
    assert seg.shape == (5, 80, 16)
    for j in range(5):  # frame 3+j → window of frame 2+j
        assert np.array_equal(seg[j], A.crop_mel_window(mel, 2 + j))
    assert A.segmented_mels(mel, 0) is None and A.segmented_mels(mel, 18) is None
    chunks = A.inference_mel_chunks(mel)
    assert len(chunks) == 22 and chunks[0][0, 0] == 0 and chunks[20][0, 0] == 64
    assert np.array_equal(chunks[-1], mel[:, -16:])
    with pytest.raises(A.AudioError, match="shorter than one window"):
        A.inference_mel_chunks(mel[:, :15])


def test_mfcc_shape_reference_values_and_windows():
    pcm = np.round(_chord() * 32767).astype(np.int16)
    c = A.syncnet_mfcc(pcm)
    assert c.shape == (13, 49)  # 0.5 s → 1 + ceil((8000 - 400) / 160)
    # python_speech_features 0.6 mfcc(pcm, 16000), computed once outside this repository
    ref = [
        21.60726,
        7.54782,
        -25.73346,
        9.66421,
        4.99869,
        -33.17457,
        -43.7134,
        -25.01769,
        28.86548,
        20.49903,
        -20.18425,
        28.16996,
        42.10852,
    ]
    np.testing.assert_allclose(c[:, 20], ref, atol=2e-3)
    np.testing.assert_allclose(A.syncnet_mfcc(pcm.astype(np.float32) / 32768.0), c, atol=1e-4)
    assert A.syncnet_mfcc(np.zeros(2 * SR, np.int16)).shape == (13, 199)  # ~100 Hz
    w = A.mfcc_window(c, 2)
    assert w.shape == (13, 20) and np.array_equal(w, c[:, 8:28])
    assert A.mfcc_window(c, 8) is None  # 32 + 20 > 49


def test_read_wav_resamples_and_names_bad_files(tmp_path):
    from scipy.io import wavfile

    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050) * 32767).astype(np.int16)
    wavfile.write(tmp_path / "a.wav", 22050, np.stack([x, x], axis=1))
    y = A.read_wav(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == 16000
    assert np.abs(y).max() == pytest.approx(0.5, abs=0.02)
    (tmp_path / "bad.wav").write_bytes(b"RIFF????not a wav")
    with pytest.raises(A.AudioError, match="bad.wav"):
        A.read_wav(tmp_path / "bad.wav")
    wavfile.write(tmp_path / "empty.wav", 16000, np.zeros(0, np.int16))
    with pytest.raises(A.AudioError, match="empty.wav"):
        A.read_wav(tmp_path / "empty.wav")
