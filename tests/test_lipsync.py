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
