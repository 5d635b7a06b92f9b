"""`unetprune lipsync`: a small untrained Wav2Lip generator, real media through ffmpeg-python.

The output mp4 must decode fully and last as long as the audio (±1 frame at 25 fps); the
error cases (no face, unreadable media, audio shorter than one window, a video without audio
as the audio source) give one line naming the file and leave no output behind.
"""

from pathlib import Path

import numpy as np
import pytest

from unetprune.cli import main
from unetprune.data import media as M

FRAME = 1 / 25


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import cv2
    from skimage import data as skdata

    from unetprune.checkpoint import save_generator
    from unetprune.family import family_names, register_family, unregister_family
    from unetprune.families.wav2lip.family import Wav2LipFamily
    from unetprune.families.wav2lip.networks import Wav2LipSpec, build_wav2lip

    d = tmp_path_factory.mktemp("lipsync")
    registered_here = "wav2lip" not in family_names()
    if registered_here:
        register_family(Wav2LipFamily())
    save_generator(d / "G.pt", build_wav2lip(Wav2LipSpec.reference(0.125), seed=0))
    if registered_here:
        unregister_family("wav2lip")
    face = cv2.resize(skdata.astronaut()[:300, 100:400], (150, 150), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(d / "face.png"), face[..., ::-1])
    # a short face video (0.8 s, shorter than the audio: it loops), with a little motion
    frames = np.stack([np.roll(face[:, :148], i % 3, axis=1) for i in range(20)])  # 150 x 148
    M.encode_mp4(d / "face.mp4", frames, 25)
    rng = np.random.default_rng(0)
    t = np.arange(int(1.37 * 16000)) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.02 * rng.standard_normal(
        len(t)
    )
    M.write_wav(d / "speech.wav", speech.astype(np.float32), 16000)
    M.encode_mp4(d / "talk.mp4", frames, 25, d / "speech.wav")  # audio source given as a video
    M.write_wav(d / "short.wav", speech[:1200].astype(np.float32), 16000)  # 0.075 s
    cv2.imwrite(str(d / "blank.png"), np.full((120, 120, 3), 128, np.uint8))
    (d / "notvideo.mp4").write_text("this is not a video\n")
    return d


def _check_output(out: Path, audio_s: float):
    info = M.probe(out, require_video=True, require_audio=True)
    frames, _ = M.decode_frames(out)  # decodes fully (raises on a truncated/corrupt file)
    assert info.video.codec == "h264" and info.audio.codec == "aac"
    assert abs(len(frames) * FRAME - audio_s) <= FRAME + 1e-6, (len(frames), audio_s)
    assert abs(info.duration - audio_s) <= FRAME + 1e-6, (info.duration, audio_s)
    return frames


def test_lipsync_video_face_wav_audio(inputs, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "lipsync",
            "--checkpoint",
            str(inputs / "G.pt"),
            "--face",
            str(inputs / "face.mp4"),
            "--audio",
            str(inputs / "speech.wav"),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    frames = _check_output(out, 1.37)
    assert frames.shape[1:3] == (150, 148)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_lipsync_still_image_and_audio_from_a_video(inputs, tmp_path):
    from unetprune.families.wav2lip.lipsync import lipsync

    s = lipsync(
        inputs / "G.pt",
        inputs / "face.png",
        inputs / "talk.mp4",
        tmp_path / "still.mp4",
        device="cpu",
        paste="face",
    )
    assert s["still_image"] and s["frames"] == round(s["audio_seconds"] * 25)
    frames = _check_output(tmp_path / "still.mp4", s["audio_seconds"])
    # the generated region changes the face, the rest of the image is the photo
    assert frames.shape[1:3] == (150, 150)


def test_lipsync_loads_without_the_family_registered(inputs):
    from unetprune.families.wav2lip.lipsync import load_generator
    from unetprune.family import family_names
    from unetprune.families.wav2lip.networks import Wav2LipGenerator

    g = load_generator(inputs / "G.pt")
    assert isinstance(g, Wav2LipGenerator) and not g.training
    assert g.spec.fe_widths[0] == 2
    if "wav2lip" not in family_names():  # the direct path (family not registered yet) was taken
        assert type(g).__name__ == "Wav2LipGenerator"


@pytest.mark.parametrize(
    "face,audio,match",
    [
        ("blank.png", "speech.wav", "no face found"),
        ("notvideo.mp4", "speech.wav", "not a readable audio/video file"),
        ("face.png", "short.wav", "shorter than one window"),
        ("face.png", "face.mp4", "has no audio stream"),
        ("face.png", "missing.wav", "no such file"),
    ],
)
def test_lipsync_errors_are_one_line_naming_the_file(inputs, tmp_path, capsys, face, audio, match):
    out = tmp_path / "bad.mp4"
    rc = main(
        [
            "lipsync",
            "--checkpoint",
            str(inputs / "G.pt"),
            "--face",
            str(inputs / face),
            "--audio",
            str(inputs / audio),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    assert (face in err) or (audio in err), err
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- streaming, seams, stats


def _reference_frames(ckpt: Path, face_mp4: Path, wav_path: Path, batch: int = 32) -> np.ndarray:
    """The previous in-memory algorithm (every frame decoded, the boxes of one pass over all of
    them, batches of ``batch``, the whole box pasted): the frames it would have encoded."""
    import cv2
    import torch

    from unetprune import audio as A
    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.families.wav2lip.faces import HaarDetector, track_faces

    g = generator_from_checkpoint(ckpt).eval()
    frames, _ = M.decode_frames(face_mp4)
    boxes = track_faces(frames, HaarDetector(), pads=(0, 10, 0, 0), smooth_T=5).boxes
    wav = A.read_wav(wav_path, 16000)
    mel = A.melspectrogram(wav)
    n_out = max(1, round(len(wav) / 16000 * 25))
    last = mel.shape[1] - 16
    out = []
    for i0 in range(0, n_out, batch):
        idx = list(range(i0, min(n_out, i0 + batch)))
        src = [i % len(frames) for i in idx]
        crops = []
        for j in src:
            x1, y1, x2, y2 = (int(v) for v in boxes[j])
            crops.append(cv2.resize(np.ascontiguousarray(frames[j][y1:y2, x1:x2, ::-1]), (96, 96)))
        crops = np.stack(crops).astype(np.float32) / 255.0
        masked = crops.copy()
        masked[:, 48:] = 0.0
        x = torch.from_numpy(np.concatenate([masked, crops], axis=3)).permute(0, 3, 1, 2)
        mels = np.stack([mel[:, s : s + 16] for s in (min(int(80 * i / 25), last) for i in idx)])
        with torch.no_grad():
            pred = g(x, torch.from_numpy(mels)[:, None]).permute(0, 2, 3, 1).numpy() * 255.0
        for k, j in enumerate(src):
            fr = frames[j].copy()
            x1, y1, x2, y2 = (int(v) for v in boxes[j])
            p = cv2.resize(pred[k], (x2 - x1, y2 - y1))[..., ::-1]
            fr[y1:y2, x1:x2] = np.clip(p + 0.5, 0, 255).astype(np.uint8)
            out.append(fr[: fr.shape[0] // 2 * 2, : fr.shape[1] // 2 * 2])
    return np.stack(out)


def test_streaming_output_equals_the_in_memory_algorithm(inputs, tmp_path):
    """Chunks of 3 frames (the 20-frame face video looped 3 times, box smoothing across every
    chunk edge, generator batches of 3) give, decoded, the frames of the previous in-memory
    algorithm within encoder noise; encoded the same way, the two files decode equal."""
    from unetprune.families.wav2lip.lipsync import lipsync

    out = tmp_path / "stream.mp4"
    s = lipsync(
        inputs / "G.pt",
        inputs / "face.mp4",
        inputs / "speech.wav",
        out,
        device="cpu",
        paste="face",
        batch_size=3,
    )
    assert s["chunk_frames"] == 3 and s["face_frames"] == 20 and s["frames"] == 34
    new, _ = M.decode_frames(out)
    ref = _reference_frames(inputs / "G.pt", inputs / "face.mp4", inputs / "speech.wav")
    assert new.shape == ref.shape == (34, 150, 148, 3)
    diff = np.abs(new.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 2.0, diff.mean()  # H.264 at crf 20
    M.encode_mp4(tmp_path / "ref.mp4", ref, 25)
    ref_decoded, _ = M.decode_frames(tmp_path / "ref.mp4")
    same = np.abs(new.astype(np.int16) - ref_decoded.astype(np.int16))
    assert same.max() <= 2 and same.mean() < 0.01, (same.max(), same.mean())


def test_output_keeps_the_whole_audio(inputs, tmp_path):
    """The mp4 lasts as long as the audio within one frame and its audio stream is complete
    (decoded back: as many samples as the input, not cut to the video)."""
    from unetprune import audio as A
    from unetprune.families.wav2lip.lipsync import lipsync

    out = tmp_path / "o.mp4"
    lipsync(inputs / "G.pt", inputs / "face.png", inputs / "speech.wav", out, device="cpu")
    info = M.probe(out, require_video=True, require_audio=True)
    audio_s = len(A.read_wav(inputs / "speech.wav")) / 16000
    assert abs(info.duration - audio_s) <= FRAME, (info.duration, audio_s)
    back = M.extract_audio(out, tmp_path / "back.wav")
    got = len(A.read_wav(back)) / 16000
    assert got >= audio_s - 0.005 and got - audio_s < FRAME, (got, audio_s)


class _Counting:
    def __init__(self):
        from unetprune.families.wav2lip.faces import HaarDetector

        self.inner, self.frames, self.calls = HaarDetector(), 0, 0

    def detect(self, frames):
        self.calls += 1
        self.frames += len(frames)
        return self.inner.detect(frames)


def test_still_image_is_detected_once_and_stats_cover_every_stage(inputs, tmp_path):
    from unetprune.families.wav2lip.lipsync import STAGES, format_stats, lipsync

    det = _Counting()
    s = lipsync(inputs / "G.pt", inputs / "face.png", inputs / "speech.wav", tmp_path / "o.mp4", detector=det)
    assert (det.calls, det.frames) == (1, 1)
    st = s["stages"]
    assert list(st) == list(STAGES)
    assert st["detect"]["frames"] == 1 and st["generate"]["frames"] == s["frames"] == 34
    assert all(st[k]["seconds"] > 0 and st[k]["fps"] > 0 for k in STAGES)
    assert abs(sum(v["share"] for v in st.values()) - 1) < 1e-3
    text = format_stats({**s, "fps": s["frames_per_second"]})
    assert all(k in text for k in STAGES) and "frames/s" in text


def test_video_boxes_detected_once_per_frame(inputs, tmp_path):
    from unetprune.families.wav2lip.lipsync import lipsync

    det = _Counting()
    lipsync(
        inputs / "G.pt",
        inputs / "face.mp4",
        inputs / "speech.wav",
        tmp_path / "o.mp4",
        detector=det,
        batch_size=4,
    )
    assert det.frames == 20 and det.calls == 5  # 20 frames in chunks of 4; the loops reuse the boxes


def test_cli_stats_prints_frames_per_second_per_stage(inputs, tmp_path, capsys):
    argv = ["lipsync", "--checkpoint", str(inputs / "G.pt"), "--face", str(inputs / "face.mp4")]
    argv += [
        "--audio",
        str(inputs / "speech.wav"),
        "--out",
        str(tmp_path / "o.mp4"),
        "--no-progress",
        "--stats",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for stage in ("decode", "detect", "mel", "generate", "paste", "encode"):
        line = next(ln for ln in err.splitlines() if ln.startswith(stage))
        assert float(line.split()[3]) > 0, line
    assert "end to end: 34 frames" in err


def test_blocked_mel_equals_the_whole_spectrogram():
    from unetprune import audio as A
    from unetprune.families.wav2lip.lipsync import melspectrogram_blocks

    wav = np.random.default_rng(1).standard_normal(16000 * 3 + 123).astype(np.float32) * 0.1
    whole = A.melspectrogram(wav)
    for block in (1, 7, 100, 10_000):
        np.testing.assert_allclose(melspectrogram_blocks(wav, block), whole, atol=1e-5, rtol=0)


def _border_steps(img: np.ndarray, box) -> dict:
    """Mean absolute step between the pixels on either side of each border of the lower half of
    ``box`` (the pasted region): its left, right and bottom edges."""
    x1, y1, x2, y2 = (int(v) for v in box)
    ym = (y1 + y2) // 2
    f = img.astype(np.float32)
    return {
        "left": np.abs(f[ym:y2, x1] - f[ym:y2, x1 - 1]).mean(),
        "right": np.abs(f[ym:y2, x2 - 1] - f[ym:y2, x2]).mean(),
        "bottom": np.abs(f[y2 - 1, x1:x2] - f[y2, x1:x2]).mean(),
    }


def test_lower_paste_leaves_no_seam_on_a_real_face(inputs):
    """On a real face photo (scikit-image's astronaut portrait) with a generator's prediction
    (random weights: as unlike the face as a prediction gets), the pasted lower half's borders
    step no more than the photo itself steps there; the previous paste (feathered only at the
    middle of the box) left a hard edge at the sides."""
    import cv2
    import torch
    from skimage import data as skdata

    from unetprune.families.wav2lip.faces import HaarDetector, pad_boxes
    from unetprune.families.wav2lip.lipsync import _crop96, _paste, load_generator

    photo = np.ascontiguousarray(skdata.astronaut())  # 512 x 512 RGB
    box = pad_boxes([HaarDetector().detect(photo[None])[0]], photo.shape[:2])[0]
    assert box[3] < photo.shape[0] and box[0] > 0 and box[2] < photo.shape[1]
    crop = _crop96(photo, box).astype(np.float32) / 255.0
    masked = crop.copy()
    masked[FACE_HALF:] = 0
    x = torch.from_numpy(np.concatenate([masked, crop], axis=2)).permute(2, 0, 1)[None]
    with torch.no_grad():
        pred = load_generator(inputs / "G.pt")(x, torch.zeros(1, 1, 80, 16))[0].permute(1, 2, 0).numpy() * 255
    own = _border_steps(photo, box)
    new = photo.copy()
    _paste(new, pred, box, "lower")
    for side, step in _border_steps(new, box).items():
        assert step <= own[side] + 1e-6, (side, step, own[side])
    assert not np.array_equal(new, photo)  # the lower half was replaced

    # the previous paste: rows feathered around the middle of the box, the sides hard
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = y2 - y1, x2 - x1
    rows = np.clip(0.5 + (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / max(1.0, 0.08 * h), 0, 1)[
        :, None, None
    ]
    old = photo.copy()
    p = cv2.resize(pred, (w, h))[..., ::-1]
    old[y1:y2, x1:x2] = np.clip(rows * p + (1 - rows) * old[y1:y2, x1:x2] + 0.5, 0, 255).astype(np.uint8)
    old_steps = _border_steps(old, box)
    assert old_steps["left"] > 2 * own["left"] and old_steps["right"] > 2 * own["right"], (old_steps, own)


FACE_HALF = 48


def test_declared_fast_commands_are_registered_by_their_modules():
    """Each command of the ``unetprune.commands`` entry points is registered by the module it
    names, which is one of the CLI's command modules; the fast parser holds only that module."""
    import importlib.metadata

    from unetprune.cli import COMMAND_ENTRY_POINTS, command_modules, command_parser

    eps = list(importlib.metadata.entry_points(group=COMMAND_ENTRY_POINTS))
    assert {ep.name for ep in eps} >= {"lipsync", "lse", "train-lse-standin"}
    mods = command_modules()
    for ep in eps:
        assert ep.value in mods, ep
        parser = command_parser([ep.name, "--help"])
        choices = next(a for a in parser._actions if a.dest == "command").choices
        assert ep.name in choices
    assert command_parser(["train", "--help"]) is None and command_parser(["--help"]) is None


def test_lipsync_refusal_imports_no_torch(inputs, tmp_path):
    """A refused ``unetprune lipsync`` (over a media limit) never imports torch."""
    import subprocess
    import sys

    code = (
        "import sys; from unetprune.cli import main; rc = main(sys.argv[1:]); "
        "print('torch' in sys.modules, rc)"
    )
    argv = ["lipsync", "--checkpoint", str(inputs / "G.pt"), "--face", str(inputs / "face.mp4")]
    argv += ["--audio", str(inputs / "speech.wav"), "--out", str(tmp_path / "o.mp4"), "--max-seconds", "0.5"]
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "2"], (r.stdout, r.stderr)
    assert "max_seconds" in r.stderr


@pytest.mark.slow  # the ONNX export takes a minute or more on 2 CPU cores
def test_onnx_generator_gives_the_same_video(inputs, tmp_path):
    """``--onnx`` (the checkpoint exported by ``unetprune export``, run by ONNX Runtime) writes
    the frames the PyTorch generator writes, within encoder noise; a file that is no Wav2Lip
    ONNX model is one line naming it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from unetprune.export import export_checkpoint
    from unetprune.families.wav2lip.lipsync import LipSyncError, lipsync

    onnx = tmp_path / "G.onnx"
    export_checkpoint(inputs / "G.pt", onnx)
    kw = {"device": "cpu", "paste": "face"}
    s = lipsync(
        inputs / "G.pt", inputs / "face.mp4", inputs / "speech.wav", tmp_path / "ort.mp4", onnx=onnx, **kw
    )
    assert s["generator"] == "onnxruntime"
    lipsync(inputs / "G.pt", inputs / "face.mp4", inputs / "speech.wav", tmp_path / "pt.mp4", **kw)
    a, _ = M.decode_frames(tmp_path / "ort.mp4")
    b, _ = M.decode_frames(tmp_path / "pt.mp4")
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert a.shape == b.shape and d.mean() < 0.5, d.mean()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(LipSyncError, match="bad.onnx: not a readable ONNX model"):
        lipsync(inputs / "G.pt", inputs / "face.png", inputs / "speech.wav", tmp_path / "x.mp4", onnx=bad)
    assert not (tmp_path / "x.mp4").exists()


def test_streamed_frames_equal_the_whole_decode_and_an_aborted_writer_leaves_nothing(inputs, tmp_path):
    whole, _ = M.decode_frames(inputs / "face.mp4")
    for chunk in (1, 3, 64):
        parts = list(M.iter_frames(inputs / "face.mp4", chunk=chunk))
        assert max(len(p) for p in parts) == min(chunk, 20)
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    first = next(iter(M.iter_frames(inputs / "face.mp4", chunk=4)))  # stopped early: no error
    assert first.shape == (4, 150, 148, 3)
    with pytest.raises(RuntimeError, match="stop"):
        with M.Mp4Writer(tmp_path / "x.mp4", 148, 150, 25, inputs / "speech.wav") as w:
            w.write(whole)
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with M.Mp4Writer(tmp_path / "y.mp4", 148, 150, 25) as w:
        w.write(whole[:10])
        w.write(whole[10:])
    assert M.decode_frames(tmp_path / "y.mp4")[0].shape == whole.shape
    assert [p.name for p in tmp_path.iterdir()] == ["y.mp4"]
