"""LSE-D / LSE-C (syncnet_python's protocol): the arithmetic on synthetic features, the
backends and the plug-in (fast); on the offline demo with the trained stand-in (slow): real
clips against the same clips with shifted or swapped audio, and the offset of a shift.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetprune import audio as A
from unetprune.families.wav2lip import lse as L
from unetprune.metrics.plugins import METRICS

# the slow tests train the stand-in LSE network once (minutes on 2 cores)
pytestmark = pytest.mark.timeout(1800)


# ------------------------------------------------------------------------------------------
# the arithmetic
# ------------------------------------------------------------------------------------------


def _features(n=60, d=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


@pytest.mark.parametrize("k", [0, 3, -4, 7, -15])
def test_known_shift_gives_known_offset(k):
    v = _features()
    # the audio feature of window i is the video feature of window i + k: audio k frames early
    a = torch.zeros_like(v)
    for i in range(len(v)):
        if 0 <= i + k < len(v):
            a[i] = v[i + k]
    r = L.sync_scores(L.calc_pdist(v, a))
    assert r["offset"] == k
    # at the right offset only the windows whose partner exists contribute distance 0
    assert r["lse_d"] < np.mean([float(v[i].norm()) for i in range(len(v))])
    assert r["lse_c"] > 0 and r["n_windows"] == len(v)


def test_pdist_matches_the_reference_definition():
    v, a = _features(12, 8, 1), _features(12, 8, 2)
    d = L.calc_pdist(v, a, vshift=3)
    assert d.shape == (12, 7)
    ap = torch.nn.functional.pad(a, (0, 0, 3, 3))
    for i in range(12):
        for j in range(7):
            ref = torch.nn.functional.pairwise_distance(v[i : i + 1], ap[i + j : i + j + 1])
            assert torch.allclose(d[i, j], ref[0])
    # out of range partners are zero vectors: distance = norm (+eps)
    assert torch.allclose(d[0, 0], torch.linalg.vector_norm(v[0] + 1e-6), atol=1e-5)


def test_lse_d_lse_c_arithmetic():
    # two windows; mean over windows per offset = 10, 8, 3, 9, 12 (vshift 2)
    d = np.array([[9, 7, 2, 10, 11], [11, 9, 4, 8, 13]], np.float32)
    r = L.sync_scores(d, vshift=2)
    assert r["mean_dists"] == [10, 8, 3, 9, 12]
    assert r["lse_d"] == pytest.approx(3.0) and r["lse_c"] == pytest.approx(9 - 3) and r["offset"] == 0
    assert r["lse_c_at_0"] == pytest.approx(6.0)
    d2 = np.array([[1, 5, 5, 5, 5]], np.float32)
    r2 = L.sync_scores(d2, vshift=2)
    assert r2["offset"] == 2 and r2["lse_d"] == 1 and r2["lse_c"] == 4 and r2["lse_c_at_0"] == 0
    agg = L.aggregate([r, r2])
    assert agg["lse_d"] == pytest.approx(2.0) and agg["lse_c"] == pytest.approx(5.0)
    assert agg["abs_offset"] == pytest.approx(1.0) and agg["n_clips"] == 2


def test_window_count_and_audio_shift():
    assert L.n_windows(100, 100 * 640) == 95
    assert L.n_windows(100, 50 * 640 + 639) == 45
    x = np.arange(10 * 640, dtype=np.int16)
    y = L.shift_audio(x, 2)
    assert (y[:1280] == 0).all() and (y[1280:] == x[:-1280]).all()
    z = L.shift_audio(x, -2)
    assert (z[:-1280] == x[1280:]).all() and (z[-1280:] == 0).all()


# ------------------------------------------------------------------------------------------
# backends, checkpoints, plug-in
# ------------------------------------------------------------------------------------------


def _random_s(seed=0):
    from unetprune.families.wav2lip.syncnet import SyncNetS

    torch.manual_seed(seed)
    return SyncNetS().eval()


def test_standard_backend_loads_syncnet_v2_state_dict_weights_only(tmp_path):
    net = _random_s()
    sd = L._s_state_dict_reference_names(net)
    assert all(k.split(".")[0] in ("netcnnaud", "netfcaud", "netcnnlip", "netfclip") for k in sd)
    torch.save(sd, tmp_path / "syncnet_v2.model")
    sc = L.LSEScorer.load("standard", tmp_path / "syncnet_v2.model")
    desc = sc.describe()
    assert desc["backend"] == "standard" and len(desc["weights_sha256"]) == 64
    # a pickle that is not plain weights is refused by weights_only loading
    import pickle

    (tmp_path / "evil.model").write_bytes(pickle.dumps(object()))
    from unetprune.errors import UserFacingError

    with pytest.raises(UserFacingError, match="weights_only"):
        L.LSEScorer.load("standard", tmp_path / "evil.model")
    with pytest.raises(UserFacingError, match="not an LSE stand-in"):
        L.LSEScorer.load("standin", tmp_path / "syncnet_v2.model")


def _standin_file(path: Path, seed=0) -> Path:
    ckpt = {
        "format": L.STANDIN_FORMAT,
        "format_version": 1,
        "arch": "syncnet_python S",
        "state_dict": L._s_state_dict_reference_names(_random_s(seed)),
        "info": {"data": "synthetic"},
    }
    torch.save(ckpt, path)
    return path


def test_plugin_registered_and_scores_clips(tmp_path):
    from types import SimpleNamespace

    from unetprune.data.media import write_wav

    assert METRICS["lse"] is L.LSEMetric
    w = _standin_file(tmp_path / "standin.pt")
    rng = np.random.default_rng(0)
    clips = []
    for i, n in enumerate((8, 9)):
        write_wav(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(n * 640)).astype(np.float32), 16000)
        clips.append({"name": f"c{i}", "n_frames": n, "audio": tmp_path / f"{i}.wav"})
    es = SimpleNamespace(clips=clips)
    ctx = SimpleNamespace(ev={"lse_backend": "standin", "lse_weights": str(w)}, device="cpu")
    m = L.LSEMetric()
    m.setup(es, ctx)
    fakes = torch.from_numpy(rng.integers(0, 255, (17, 3, 48, 48), dtype=np.uint8))
    out = m.score(fakes, None)["lse"]
    assert out["backend"] == "standin" and out["n_clips"] == 2 and len(out["weights_sha256"]) == 64
    assert [c["n_windows"] for c in out["clips"]] == [3, 4]
    json.dumps(out)
    m2 = L.LSEMetric()
    m2.setup(es, SimpleNamespace(ev={}, device="cpu"))
    assert m2.score(fakes, None) == {"lse": None}


def test_scorer_features_on_the_cpu_equal_the_contiguous_network():
    """On the CPU the scorer runs the lip branch in channels-last-3d memory: the same features as
    the contiguous network to float rounding, and the same LSE to 1e-5."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    wav = (rng.standard_normal(12 * 640) * 3000).astype(np.int16)
    sc = L.LSEScorer(_random_s(), "standin")
    assert sc.net.lip_cnn[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain = _random_s()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([frames[v : v + 5] for v in range(7)])).float().permute(0, 4, 1, 2, 3)
        expected = plain.forward_lip(x.contiguous())
    got = sc.video_features(frames, 7)
    assert got.shape == expected.shape == (7, 1024)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    ref = L.sync_scores(L.calc_pdist(expected, sc.audio_features(A.syncnet_mfcc(wav), 7)))
    res = sc.score(frames, wav)
    assert (
        res["n_windows"] == 7
        and abs(res["lse_c"] - ref["lse_c"]) < 1e-5
        and abs(res["lse_d"] - ref["lse_d"]) < 1e-5
    )


def test_too_short_clip_is_a_clear_error():
    sc = L.LSEScorer(_random_s(), "standin")
    with pytest.raises(L.LSEError, match="too short for one LSE window"):
        sc.score(np.zeros((5, 224, 224, 3), np.uint8), np.zeros(5 * 640, np.int16), "tiny")


# ------------------------------------------------------------------------------------------
# the offline demo with the trained stand-in (slow: builds the demo, trains S for a few minutes)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_standin(tmp_path_factory):
    from unetprune.cli import main
    from unetprune.families.wav2lip.demo import build_talking_demo

    root = tmp_path_factory.mktemp("lse_demo")
    build_talking_demo(root / "demo", progress=False)
    rc = main(
        [
            "train-lse-standin",
            "--data",
            str(root / "demo"),
            "--out",
            str(root / "standin.pt"),
            "--threads",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    sc = L.LSEScorer.load("standin", root / "standin.pt")
    pre, clips = L.split_clips(root / "demo", "test")
    data = {c: L.load_clip_dir(pre / c) for c in clips}
    real = {c: sc.score(*data[c], c) for c in clips}
    return sc, data, real


@pytest.mark.slow
def test_standin_is_trained_on_the_training_split_only(demo_standin):
    sc, data, _ = demo_standin
    info = sc.info
    assert info["split"] == "train" and not set(info["clips"]) & set(data)
    assert {c.split("/")[0] for c in info["clips"]}.isdisjoint({c.split("/")[0] for c in data})
    assert info["final_accuracy"] > 3 * info["chance_accuracy"]
    assert sc.describe()["backend"] == "standin" and "stand-in" in sc.describe()["label"]


@pytest.fixture(scope="module")
def lse_means(demo_standin):
    """Mean protocol LSE-C and LSE-C at offset 0 of the test clips: real, shifted by ±6 and
    20 frames, and with another clip's audio."""
    sc, data, real = demo_standin
    clips = list(data)
    rows = []
    for i, c in enumerate(clips):
        frames, wav = data[c]
        vf = real[c]["_video_feats"]
        other = data[clips[(i + 1) % len(clips)]][1]
        swapped = np.resize(other, len(wav))
        rows.append(
            {
                "real": real[c],
                "shift6": sc.score(frames, L.shift_audio(wav, 6), video_feats=vf),
                "shift-6": sc.score(frames, L.shift_audio(wav, -6), video_feats=vf),
                "shift20": sc.score(frames, L.shift_audio(wav, 20), video_feats=vf),
                "swapped": sc.score(frames, swapped, video_feats=vf),
            }
        )
    mean = {k: float(np.mean([r[k]["lse_c"] for r in rows])) for k in rows[0]}
    mean0 = {k: float(np.mean([r[k]["lse_c_at_0"] for r in rows])) for k in rows[0]}
    print("LSE-C", mean, "LSE-C at offset 0", mean0)
    return mean, mean0


@pytest.mark.slow
def test_shifted_audio_is_out_of_sync_at_offset_0(lse_means):
    # as given (offset 0), a shift of 6 frames either way is clearly out of sync
    _, mean0 = lse_means
    assert (
        mean0["real"] > 1.0
        and mean0["real"] > mean0["shift6"] + 1.0
        and mean0["real"] > mean0["shift-6"] + 1.0
    )


@pytest.mark.slow
def test_protocol_lse_c_separates_swapped_and_far_shifted_audio(lse_means):
    # the protocol's LSE-C (best offset in ±15): swapped audio and a shift beyond the window lose.
    # (Before the stand-in pinned the scale of its distances and weighed missing audio like
    # off-sync audio, the 20-frame shift scored *higher* than real audio: real 2.60, swapped 1.89,
    # shift20 6.46.)
    mean, _ = lse_means
    assert mean["real"] > 1.3 * mean["swapped"] and mean["real"] > 1.3 * mean["shift20"]


@pytest.mark.slow
def test_standin_reads_sync_through_blur(demo_standin, lse_means):
    """Generated faces are softer than the crisp demo frames: real test frames blurred by 2
    pixels of a 96 px face (4.7 at 224) still score well above swapped audio, at offset 0 or
    within one frame of it; the stand-in trained on sharp windows alone fell below it."""
    import cv2

    sc, data, _ = demo_standin
    mean, _ = lse_means
    soft = []
    for frames, wav in data.values():
        r = sc.score(np.stack([cv2.GaussianBlur(f, (0, 0), 4.7) for f in frames]), wav)
        soft.append(r)
    assert sc.info["blur"] == 4.7
    assert float(np.mean([r["lse_c"] for r in soft])) > 1.3 * mean["swapped"], [r["lse_c"] for r in soft]
    assert sum(abs(r["offset"]) <= 1 for r in soft) >= len(soft) - 1, [r["offset"] for r in soft]


@pytest.mark.slow
def test_offset_of_a_shift_is_found(demo_standin):
    sc, data, real = demo_standin
    ok = [c for c in data if real[c]["offset"] == 0]
    assert len(ok) >= len(data) - 1, {c: real[c]["offset"] for c in data}
    for c in ok:
        frames, wav = data[c]
        for k in (5, -3, 8):
            # audio delayed by k frames = k frames late → offset -k (the reference's sign)
            r = sc.score(frames, L.shift_audio(wav, k), video_feats=real[c]["_video_feats"])
            assert abs(r["offset"] - (-k)) <= 1, (c, k, r["offset"])


# --- the published protocol (the Wav2Lip repository's evaluation) against own-audio --------------


@pytest.fixture(scope="module")
def published_set(tmp_path_factory):
    """Two talking videos a/b (a face with a little motion, different audio), a small generator
    checkpoint and the filelist of the reference's lrs2.txt format."""
    import cv2
    from skimage import data as skdata

    from unetprune.checkpoint import save_generator
    from unetprune.data import media as M
    from unetprune.families.wav2lip.networks import Wav2LipSpec, build_wav2lip

    d = tmp_path_factory.mktemp("published")
    face = cv2.resize(skdata.astronaut()[:300, 100:400], (150, 150), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(face, i % 3, axis=1) for i in range(20)])
    rng = np.random.default_rng(0)
    t = np.arange(20 * 640) / 16000
    for name, hz in (("a", 180), ("b", 330)):
        speech = 0.3 * np.sin(2 * np.pi * hz * t) * (np.sin(2 * np.pi * 3 * t) > 0)
        M.write_wav(
            d / f"{name}.wav", (speech + 0.02 * rng.standard_normal(len(t))).astype(np.float32), 16000
        )
        (d / "videos" / "spk").mkdir(parents=True, exist_ok=True)
        M.encode_mp4(d / "videos" / "spk" / f"{name}.mp4", frames, 25, d / f"{name}.wav")
    save_generator(d / "G.pt", build_wav2lip(Wav2LipSpec.reference(0.125), seed=0))
    (d / "lrs2.txt").write_text("spk/b spk/a\nspk/a spk/a\n")
    return d


def test_published_protocol_pairs_written_videos_and_whole_frames(published_set, tmp_path):
    d = published_set
    pairs = L.read_pairs(d / "lrs2.txt", d / "videos")
    assert [(n, a.name, v.name) for n, a, v in pairs] == [
        ("spk/b spk/a", "b.mp4", "a.mp4"),
        ("spk/a spk/a", "a.mp4", "a.mp4"),
    ]
    scorer = L.LSEScorer(_random_s(), "standin")
    res = L.published_lse(scorer, d / "G.pt", pairs, tmp_path / "videos")
    assert res["protocol"] == "published" and res["n_clips"] == 2 and res["skipped"] == []
    assert [c["clip"] for c in res["clips"]] == ["spk/b spk/a", "spk/a spk/a"]
    assert any(
        "face detector: opencv-haar" in x or "face detector: haar" in x for x in res["differs_from_published"]
    )

    for c, (_, audio_src, _video) in zip(res["clips"], pairs):
        written = Path(c["video"])
        assert written.parent == tmp_path / "videos"
        # the frames scored are the written mp4's, whole, at 224; its audio is the audio source's
        frames, wav = L.written_video(written)
        assert frames.shape[1:] == (224, 224, 3) and abs(len(frames) - len(wav) / 640) <= 1
        again = scorer.score(frames, wav, c["clip"])
        assert again["lse_d"] == pytest.approx(c["lse_d"]) and again["lse_c"] == pytest.approx(c["lse_c"])
        src = L.audio_of_video(audio_src)
        n = min(len(src), len(wav))
        assert np.corrcoef(src[:n].astype(float), wav[:n].astype(float))[0, 1] > 0.9
    # the two protocols differ where they should: another clip's audio gives other scores
    b_on_a, a_on_a = res["clips"]
    assert (b_on_a["lse_d"], b_on_a["lse_c"]) != pytest.approx((a_on_a["lse_d"], a_on_a["lse_c"]))


def test_published_own_audio_pair_equals_own_audio_on_the_written_frames(published_set, tmp_path):
    """Same weights, same video, its own audio: the published protocol's LSE equals own-audio
    scoring of the written video's whole frames with the clip's own audio."""
    d = published_set
    pairs = [p for p in L.read_pairs(d / "lrs2.txt", d / "videos") if p[0] == "spk/a spk/a"]
    scorer = L.LSEScorer(_random_s(), "standin")
    res = L.published_lse(scorer, d / "G.pt", pairs, tmp_path / "v")
    frames, _ = L.written_video(tmp_path / "v" / "0.mp4")
    own = scorer.score(frames, L.read_int16_wav(d / "a.wav"), "a")
    assert res["lse_d"] == pytest.approx(own["lse_d"], abs=0.02)
    assert res["lse_c"] == pytest.approx(own["lse_c"], abs=0.02)


def test_filelist_errors_are_one_line(published_set, tmp_path):
    d = published_set
    bad = tmp_path / "l.txt"
    for text, needle in (
        ("spk/a\n", "expected 'AUDIO_SOURCE VIDEO'"),
        ("../x spk/a\n", "leaves the video root"),
        ("spk/zz spk/a\n", "does not exist"),
    ):
        bad.write_text(text)
        with pytest.raises(L.LSEError, match=needle) as e:
            L.read_pairs(bad, d / "videos")
        assert "\n" not in str(e.value)


def test_metric_runs_the_published_protocol_on_the_generator(published_set, tmp_path):
    """evaluate.lse_protocol published: the metric generates the filelist's pairs with the evaluated
    generator (the fakes are not used); own-audio records its differences from the published one."""
    from types import SimpleNamespace

    from unetprune.checkpoint import generator_from_checkpoint

    d = published_set
    w = _standin_file(tmp_path / "standin.pt")
    ev = {
        "lse_backend": "standin",
        "lse_weights": str(w),
        "lse_protocol": "published",
        "lse_filelist": str(d / "lrs2.txt"),
        "lse_video_root": str(d / "videos"),
    }
    m = L.LSEMetric()
    m.setup(SimpleNamespace(clips=[]), SimpleNamespace(ev=ev, device="cpu"))
    out = m.score(None, generator_from_checkpoint(d / "G.pt"))["lse"]
    assert out["protocol"] == "published" and out["n_clips"] == 2
    assert [c["clip"] for c in out["clips"]] == ["spk/b spk/a", "spk/a spk/a"]
    json.dumps(out)
    with pytest.raises(L.LSEError, match="needs evaluate.lse_filelist"):
        L.LSEMetric().setup(
            SimpleNamespace(clips=[]), SimpleNamespace(ev={**ev, "lse_filelist": None}, device="cpu")
        )
    assert any("own audio" in x for x in L.OWN_AUDIO_DIFFERENCES)


def _ramp_video(d: Path, n: int = 12, fps: int = 25) -> Path:
    """A face video whose frames differ in brightness (+6 per frame) with speech-like audio."""
    import cv2
    from skimage import data as skdata

    from unetprune.data import media as M

    face = cv2.resize(skdata.astronaut()[:300, 100:400], (150, 150), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.clip(face.astype(int) - 40 + 6 * i, 0, 255).astype(np.uint8) for i in range(n)])
    t = np.arange(round(n / fps * 16000)) / 16000
    M.write_wav(d / "ramp.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return M.encode_mp4(d / "ramp.mp4", frames, fps, d / "ramp.wav")


def test_published_protocol_feeds_the_same_frame_as_identity_reference(tmp_path, monkeypatch):
    """The generator's inputs in the published protocol: for output frame k, the identity half is
    the unmasked crop of video frame k itself (as inference.py), the masked half the same crop
    with its lower half zeroed."""
    from unetprune.checkpoint import save_generator
    from unetprune.families.wav2lip import lipsync as LS
    from unetprune.families.wav2lip.faces import HaarDetector
    from unetprune.families.wav2lip.networks import Wav2LipSpec, build_wav2lip

    video = _ramp_video(tmp_path)
    save_generator(tmp_path / "G.pt", build_wav2lip(Wav2LipSpec.reference(0.125), seed=0))
    fed = []
    real_load = LS.load_generator

    def recording_load(checkpoint, device="cpu"):
        g = real_load(checkpoint, device)

        class Recorder(torch.nn.Module):
            def forward(self, faces, mels):
                fed.append(faces.detach().cpu().numpy().copy())
                return g(faces, mels)

        return Recorder()

    monkeypatch.setattr(LS, "load_generator", recording_load)
    res = L.published_lse(
        L.LSEScorer(_random_s(), "standin"),
        tmp_path / "G.pt",
        [("ramp ramp", video, video)],
        tmp_path / "out",
    )
    assert res["n_clips"] == 1 and res["skipped"] == []
    x = np.concatenate(fed)  # (n_out, 6, 96, 96): masked crop, reference crop
    frames, _ = LS.read_face_input(video)
    boxes = LS.face_boxes(frames, HaarDetector(), pads=L.PUBLISHED_PADS, smooth=True)
    crops = np.stack([LS._crop96(f, b) for f, b in zip(frames, boxes)]).astype(np.float32) / 255.0
    crops = crops.transpose(0, 3, 1, 2)
    assert len(x) == len(frames) == 12
    ref, masked = x[:, 3:], x[:, :3]
    np.testing.assert_array_equal(ref, crops)  # the identity reference of frame k is frame k's crop
    np.testing.assert_array_equal(masked[:, :, :48], crops[:, :, :48])
    assert (masked[:, :, 48:] == 0).all()
    # and no other frame: the frames differ (brightness ramp), so a shifted reference would not match
    for k in range(len(x)):
        others = [j for j in range(len(crops)) if j != k]
        assert min(np.abs(ref[k] - crops[j]).mean() for j in others) > 0.01


def test_published_protocol_fid_over_every_written_frame(published_set, tmp_path):
    """The published protocol's FID: every frame of the written mp4s against every frame of the
    pairs' face videos (each once), whole, through the FID backend's extractor."""
    from unetprune.data.media import decode_frames
    from unetprune.metrics import fid as F

    d = published_set
    pairs = L.read_pairs(d / "lrs2.txt", d / "videos")
    ext = F.get_extractor("standin", seed=0, cache_dir=tmp_path / "cache")
    scorer = L.LSEScorer(_random_s(), "standin")
    res = L.published_lse(scorer, d / "G.pt", pairs, tmp_path / "v", fid_extractor=ext)
    fid = res["fid"]
    written = [decode_frames(tmp_path / "v" / f"{i}.mp4")[0] for i in range(2)]
    real = decode_frames(d / "videos" / "spk" / "a.mp4")[0]  # a.mp4 is the face video of both pairs
    assert fid["n_generated_frames"] == sum(len(w) for w in written) == 40
    assert fid["n_real_frames"] == len(real) == 20
    expect = F.fid_from_stats(
        F.FeatureStats.from_features(np.concatenate([L.frame_features(w, ext) for w in written])),
        F.FeatureStats.from_features(L.frame_features(real, ext)),
    )
    assert fid["value"] == pytest.approx(expect, rel=1e-9) and fid["value"] > 0
    assert fid["backend"] == "standin"
    # a backend other than pytorch-fid's is a listed difference; pytorch-fid-compat is none
    assert any("standin backend" in x for x in res["differs_from_published"])
    assert not any("FID" in x for x in L.published_differences("s3fd", "pytorch-fid-compat"))
    assert any("FID: not computed" in x for x in L.published_differences("s3fd", None))
    no_fid = L.published_lse(scorer, d / "G.pt", pairs[:1], tmp_path / "w")
    assert no_fid["fid"] is None and any("FID: not computed" in x for x in no_fid["differs_from_published"])


def test_lse_video_decodes_within_the_media_flags(tmp_path, monkeypatch, capsys):
    """`unetprune lse --video` with --max-* flags: the decoding and the audio extraction get the
    flags' limits, not the defaults (a 10 fps clip of 12 frames passes the probe with
    --max-frames 20 but decodes to 30 frames at 25 fps, which the decoder then refuses)."""
    from unetprune.cli import main
    from unetprune.data import media as M

    video = _ramp_video(tmp_path, n=12, fps=10)
    w = _standin_file(tmp_path / "standin.pt")
    seen = []
    real_decode, real_extract = M.decode_frames, M.extract_audio

    def decode(path, **kw):
        seen.append(("decode", kw["limits"]))
        return real_decode(path, **kw)

    def extract(src, dest, sr=16000, **kw):
        seen.append(("audio", kw["limits"]))
        return real_extract(src, dest, sr, **kw)

    monkeypatch.setattr(M, "decode_frames", decode)
    monkeypatch.setattr(M, "extract_audio", extract)
    raised = M.MediaLimits(max_seconds=700.0, max_frames=40000, max_pixels=9_000_000)
    flags = ["--max-seconds", "700", "--max-frames", "40000", "--max-pixels", "9000000"]
    base = ["lse", "--backend", "standin", "--weights", str(w), "--video", str(video)]
    assert main([*base, *flags, "--out", str(tmp_path / "r.json")]) == 0
    assert {k for k, _ in seen} == {"decode", "audio"} and all(lim == raised for _, lim in seen)
    assert json.loads((tmp_path / "r.json").read_text())["n_clips"] == 1
    capsys.readouterr()
    assert main([*base, "--max-frames", "20"]) != 0
    err = capsys.readouterr().err.strip()
    assert "decodes to more than 20 frames" in err and "--max-frames" in err and "\n" not in err


def test_metric_published_fid_and_media_limits_come_from_the_evaluation(published_set, tmp_path):
    """In the Evaluator the published protocol takes the fid plug-in's extractor (FID over every
    written frame) and reads the media within the config's data.media limits."""
    from types import SimpleNamespace

    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.metrics import fid as F

    d = published_set
    ev = {
        "lse_backend": "standin",
        "lse_weights": str(_standin_file(tmp_path / "standin.pt")),
        "lse_protocol": "published",
        "lse_filelist": str(d / "lrs2.txt"),
        "lse_video_root": str(d / "videos"),
    }
    ext = F.get_extractor("standin", seed=0, cache_dir=tmp_path / "cache")
    fid_plugin = SimpleNamespace(extractor=ext, batch_size=8)
    G = generator_from_checkpoint(d / "G.pt")
    m = L.LSEMetric()
    m.setup(SimpleNamespace(clips=[]), SimpleNamespace(ev=ev, device="cpu", metrics={"fid": fid_plugin}))
    out = m.score(None, G)["lse"]
    assert out["fid"]["backend"] == "standin" and out["fid"]["n_generated_frames"] == 40
    assert out["fid"]["n_real_frames"] == 20 and out["fid"]["value"] > 0
    assert any("standin backend" in x for x in out["differs_from_published"])
    cfg = {"data": {"media": {"max_seconds": 600, "max_frames": 5, "max_pixels": 8294400}}}
    m2 = L.LSEMetric()
    m2.setup(SimpleNamespace(clips=[]), SimpleNamespace(ev=ev, device="cpu", cfg=cfg))
    with pytest.raises(L.LSEError, match="over the limit of 5 frames"):
        m2.score(None, G)
