"""Audio/video files through ffmpeg-python: probe, extract audio, decode frames, encode mp4.

Every ffmpeg call goes through ``ffmpeg-python`` (``stream.run(cmd=ffmpeg_exe())``).  The
binary is ``ffmpeg`` on ``PATH`` when there is one, else the one that the ``imageio-ffmpeg``
wheel ships (so a clean ``pip install`` needs no system package).  There is no ``ffprobe``
in that wheel: :func:`probe` parses what ``ffmpeg -i FILE`` prints (streams, duration, fps)
and checks that the file is usable.

Failures a user can fix are :class:`MediaError` (a ``UserFacingError``): one line that names
the file — a truncated mp4, a text file renamed ``.mp4``, a video without an audio stream
where one is required, a WAV file with no samples.

Writers are atomic: ffmpeg writes a temporary file next to the destination
(``.<name>.<random>.tmp<suffix>``), which is renamed over the destination only when ffmpeg
succeeded; on any failure the temporary file is removed, so nothing half-written is left.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import UserFacingError


class MediaError(UserFacingError, ValueError):
    """An unreadable or unusable media file (the message names the file)."""


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``$UNETPRUNE_FFMPEG``, ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    env = os.environ.get("UNETPRUNE_FFMPEG")
    if env:
        return env
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        raise MediaError("no ffmpeg binary: install imageio-ffmpeg (pip) or put ffmpeg on PATH") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg():
    import ffmpeg  # ffmpeg-python

    return ffmpeg


def _last_lines(stderr: bytes | str | None, n: int = 2) -> str:
    if not stderr:
        return "no output"
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " / ".join(lines[-n:]) if lines else "no output"


# ------------------------------------------------------------------------------------------
# probing
# ------------------------------------------------------------------------------------------


@dataclass
class StreamInfo:
    index: int
    kind: str  # "video" | "audio" | other
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: str | None = None


@dataclass
class MediaInfo:
    path: Path
    format: str
    duration: float | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def fps(self) -> float | None:
        return self.video.fps if self.video else None

    @property
    def n_frames(self) -> int | None:
        """Frames expected from the header (duration x fps), rounded."""
        if self.duration is None or not self.fps:
            return None
        return round(self.duration * self.fps)


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_INPUT = re.compile(r"Input #0,\s*([^,]+(?:,[^,]+)*?), from")
_STREAM = re.compile(r"Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?:\s*(\w+):\s*([^\s,]+)(.*)")
_SIZE = re.compile(r"[,\s](\d{2,5})x(\d{2,5})[\s,\[]")
_FPS = re.compile(r"([\d.]+)\s*fps")
_TBR = re.compile(r"([\d.]+k?)\s*tbr")
_RATE = re.compile(r"(\d+)\s*Hz")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def parse_ffmpeg_info(path: Path, text: str) -> MediaInfo:
    """A :class:`MediaInfo` from ``ffmpeg -i`` stderr (raises MediaError when no input was read)."""
    m = _INPUT.search(text)
    if not m:
        raise MediaError(f"{path}: not a readable audio/video file ({_last_lines(text, 1)})")
    fmt = m.group(1).strip()
    d = _DURATION.search(text)
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else None
    streams = []
    for line in text.splitlines():
        s = _STREAM.search(line)
        if not s:
            continue
        idx, kind, codec, rest = int(s.group(1)), s.group(2).lower(), s.group(3), s.group(4)
        info = StreamInfo(index=idx, kind=kind, codec=codec)
        if kind == "video":
            sz = _SIZE.search(rest + " ")
            if sz:
                info.width, info.height = int(sz.group(1)), int(sz.group(2))
            f = _FPS.search(rest) or _TBR.search(rest)
            if f and not f.group(1).endswith("k"):
                info.fps = float(f.group(1))
        elif kind == "audio":
            r = _RATE.search(rest)
            info.sample_rate = int(r.group(1)) if r else None
            parts = [p.strip() for p in rest.split(",")]
            info.channels = parts[2] if len(parts) > 2 else None
        streams.append(info)
    return MediaInfo(path=path, format=fmt, duration=duration, streams=streams)


def probe(path: Path | str, *, require_video: bool = False, require_audio: bool = False) -> MediaInfo:
    """Streams, duration and fps of a media file (``ffmpeg -i``; no ffprobe needed).

    Raises :class:`MediaError` naming the file when it is missing, empty, not media (e.g. a
    text file renamed ``.mp4``), truncated (an mp4 without its index), lacks a stream that
    is required, or holds no samples / no duration.
    """
    import subprocess

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, a media file was expected")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    text = proc.stderr.decode("utf-8", "replace")
    if "moov atom not found" in text:
        with open(path, "rb") as f:
            head = f.read(12)
        if head[4:8] not in _MP4_BOXES:
            raise MediaError(
                f"{path}: not a readable audio/video file (no MP4/MOV header: "
                f"another kind of file named .mp4?)"
            )
        raise MediaError(f"{path}: truncated or incomplete mp4 (no 'moov' index; the file was cut short)")
    info = parse_ffmpeg_info(path, text)
    if not info.streams:
        raise MediaError(f"{path}: holds no audio or video stream")
    if require_video and info.video is None:
        raise MediaError(f"{path}: has no video stream")
    if require_audio and info.audio is None:
        raise MediaError(f"{path}: has no audio stream (a talking-face clip needs its speech)")
    if info.duration is None or info.duration <= 0:
        what = "no audio samples" if info.video is None else "no frames"
        raise MediaError(f"{path}: holds {what} (duration 0)")
    return info


# ------------------------------------------------------------------------------------------
# atomic outputs
# ------------------------------------------------------------------------------------------


def _temp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


def _run_atomic(stream_fn, dest: Path, what: str, src: Path | str, input_bytes: bytes | None = None) -> Path:
    """Run ``stream_fn(tmp_path)`` (an ffmpeg-python output stream) and rename tmp → dest."""
    ffmpeg = _ffmpeg()
    dest = Path(dest)
    tmp = _temp_beside(dest)
    try:
        stream = stream_fn(str(tmp)).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        try:
            stream.run(
                cmd=ffmpeg_exe(),
                overwrite_output=True,
                capture_stdout=True,
                capture_stderr=True,
                input=input_bytes,
            )
        except ffmpeg.Error as e:
            raise MediaError(f"{src}: ffmpeg could not {what} ({_last_lines(e.stderr)})") from None
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise MediaError(f"{src}: ffmpeg wrote nothing while trying to {what}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


# ------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------


def extract_audio(src: Path | str, dest: Path | str, sr: int = 16000) -> Path:
    """The first audio stream of ``src`` as a mono 16-bit WAV at ``sr`` (atomic)."""
    src = Path(src)
    probe(src, require_audio=True)
    ffmpeg = _ffmpeg()
    out = _run_atomic(
        lambda tmp: ffmpeg.input(str(src)).output(
            tmp, ac=1, ar=sr, acodec="pcm_s16le", vn=None, format="wav"
        ),
        Path(dest),
        "extract its audio",
        src,
    )
    from scipy.io import wavfile

    try:
        _, data = wavfile.read(out)
    except Exception as e:  # noqa: BLE001
        Path(out).unlink(missing_ok=True)
        raise MediaError(f"{src}: the extracted audio is unreadable ({e})") from None
    if data.size == 0:
        Path(out).unlink(missing_ok=True)
        raise MediaError(f"{src}: the audio stream holds no samples")
    return out


def write_wav(dest: Path | str, wav: np.ndarray, sr: int) -> Path:
    """Float [-1, 1] or int16 mono samples → a 16-bit WAV file (atomic)."""
    from scipy.io import wavfile

    from ..fileio import atomic_write

    x = np.asarray(wav)
    if x.dtype != np.int16:
        x = (np.clip(x.astype(np.float64), -1.0, 1.0) * 32767.0).round().astype(np.int16)
    return atomic_write(dest, lambda f: wavfile.write(f, int(sr), x))


# ------------------------------------------------------------------------------------------
# video
# ------------------------------------------------------------------------------------------


def decode_frames(
    path: Path | str,
    *,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    check_complete: bool = True,
) -> tuple[np.ndarray, MediaInfo]:
    """All frames of ``path`` as uint8 RGB ``(N, H, W, 3)`` (optionally resampled to ``fps``
    and scaled to ``size`` = (W, H)), and the probe.  With ``check_complete`` a video that
    decodes to clearly fewer frames than its header promises (a truncated file) or with
    decoder errors raises :class:`MediaError`."""
    path = Path(path)
    info = probe(path, require_video=True)
    v = info.video
    w, h = size if size else (v.width, v.height)
    if not w or not h:
        raise MediaError(f"{path}: could not read the frame size of its video stream")
    ffmpeg = _ffmpeg()
    stream = ffmpeg.input(str(path))
    if fps:
        stream = stream.filter("fps", fps=fps)
    if size:
        stream = stream.filter("scale", w, h)
    stream = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24").global_args(
        "-hide_banner", "-nostdin", "-loglevel", "error"
    )
    try:
        out, err = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise MediaError(f"{path}: ffmpeg could not decode its video ({_last_lines(e.stderr)})") from None
    n = len(out) // (w * h * 3)
    if n == 0:
        raise MediaError(f"{path}: no video frame could be decoded")
    frames = np.frombuffer(out[: n * w * h * 3], np.uint8).reshape(n, h, w, 3)
    if check_complete:
        expected = round(info.duration * (fps or v.fps or 0)) if info.duration else 0
        if expected and n < 0.9 * expected - 1:
            raise MediaError(
                f"{path}: truncated or corrupt video: {n} frames decoded, {expected} expected from its header"
            )
        errs = err.decode("utf-8", "replace").strip() if err else ""
        if errs and any(
            k in errs.lower()
            for k in ("invalid nal", "error while decoding", "partial file", "corrupt", "truncat")
        ):
            raise MediaError(f"{path}: corrupt video stream ({_last_lines(errs, 1)})")
    return frames, info


def encode_mp4(
    dest: Path | str,
    frames: np.ndarray,
    fps: float,
    wav: Path | str | None = None,
    *,
    crf: int = 20,
    audio_bitrate: str = "96k",
) -> Path:
    """uint8 RGB frames ``(N, H, W, 3)`` (+ a WAV file) → H.264 yuv420p + AAC mp4 (atomic).
    Sides must be even (yuv420p).  The file is cut to the video's length (``-shortest``)."""
    frames = np.ascontiguousarray(np.asarray(frames, dtype=np.uint8))
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 with N > 0, got {frames.shape}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even sides, got {w}x{h}")
    ffmpeg = _ffmpeg()
    dest = Path(dest)

    def build(tmp: str):
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
        kw = {
            "vcodec": "libx264",
            "pix_fmt": "yuv420p",
            "crf": crf,
            "preset": "veryfast",
            "r": fps,
            "movflags": "+faststart",
            "format": "mp4",
        }
        if wav is not None:
            audio = ffmpeg.input(str(wav))
            return ffmpeg.output(
                video, audio, tmp, acodec="aac", audio_bitrate=audio_bitrate, shortest=None, **kw
            )
        return ffmpeg.output(video, tmp, **kw)

    if wav is not None:
        probe(wav, require_audio=True)
    return _run_atomic(build, dest, "encode the mp4", dest, input_bytes=frames.tobytes())


def mux_audio(video: Path | str, wav: Path | str, dest: Path | str, *, offset_s: float = 0.0) -> Path:
    """Copy ``video``'s picture and put ``wav`` (delayed by ``offset_s`` seconds, or advanced
    when negative) as its audio, re-encoded to AAC (atomic)."""
    ffmpeg = _ffmpeg()
    probe(video, require_video=True)
    probe(wav, require_audio=True)

    def build(tmp: str):
        v = ffmpeg.input(str(video)).video
        a = (
            ffmpeg.input(str(wav), itsoffset=offset_s).audio
            if offset_s > 0
            else ffmpeg.input(str(wav), ss=-offset_s).audio
            if offset_s < 0
            else ffmpeg.input(str(wav)).audio
        )
        return ffmpeg.output(v, a, tmp, vcodec="copy", acodec="aac", format="mp4", shortest=None)

    return _run_atomic(build, Path(dest), "mux the audio", video)
