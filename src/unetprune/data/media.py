"""Audio/video files through ffmpeg-python: probe, extract audio, decode frames, encode mp4.

Every ffmpeg command line is built by ``ffmpeg-python`` and run as
``stream.run(cmd=ffmpeg_exe())`` or, for the streaming reader and writer (:func:`iter_frames`,
:class:`Mp4Writer`: frames in bounded chunks through pipes, ffmpeg working beside the
caller), compiled and started as a subprocess.  The binary is ``ffmpeg`` on ``PATH`` when
there is one, else the one that the ``imageio-ffmpeg`` wheel ships (so a clean ``pip
install`` needs no system package).  There is no ``ffprobe`` in that wheel: :func:`probe`
parses what ``ffmpeg -i FILE`` prints (streams, duration, fps) and checks that the file is
usable.

Failures a user can fix are :class:`MediaError` (a ``UserFacingError``): one line that names
the file — a truncated mp4, a text file renamed ``.mp4``, a video without an audio stream
where one is required, a WAV file with no samples.

**Only local files reach ffmpeg.**  A name that ffmpeg would read as a protocol or URL
(``concat:a|b``, ``subfile,,…:x``, ``file:x``, ``http:…``, ``pipe:0`` — any name that starts
with letters, digits, ``+-.`` followed by ``:`` or ``,``) is refused before ffmpeg sees it
(``./NAME`` names such a local file); every path is handed over as ``file:<absolute path>``
and every input is opened with ``-protocol_whitelist file`` (``pipe`` only for the frames
this module pipes in itself); a media input must be a regular file (not a FIFO or device).

**Bounded inputs** (:class:`MediaLimits`): duration, frames (duration x fps) and pixels per
frame are checked on the probe, before anything is decoded; beyond a limit the error names
the limit, the value and how to raise it (the config key ``data.media.<limit>`` or the flag
``--max-<limit>``).  Decoding is capped as well (``-t`` and a frame count), so a header that
understates the length cannot make it grow past the limits.

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


@dataclass(frozen=True)
class MediaLimits:
    """The most one media input may hold: seconds, frames (duration x fps of the video stream)
    and pixels per frame.  The defaults suit talking-face work: 10 minutes (an LRS2 clip lasts
    seconds, a lip-sync input minutes) at up to 50 fps, frames up to UHD 4K (3840 x 2160); they
    are the defaults of the config keys ``data.media.*`` and of the ``--max-*`` flags."""

    max_seconds: float = 600.0
    max_frames: int = 30_000
    max_pixels: int = 3840 * 2160

    def check(self, info: MediaInfo) -> None:
        """Raise :class:`MediaError` when the probed ``info`` exceeds a limit."""
        if info.duration is not None and info.duration > self.max_seconds:
            self.refuse(info.path, "seconds", f"lasts {info.duration:.0f} s")
        v = info.video
        if v is not None and info.n_frames is not None and info.n_frames > self.max_frames:
            self.refuse(
                info.path, "frames", f"holds {info.n_frames} frames ({info.duration:.0f} s at {v.fps:g} fps)"
            )
        if v is not None and v.width and v.height and v.width * v.height > self.max_pixels:
            self.refuse(
                info.path, "pixels", f"has {v.width}x{v.height} = {v.width * v.height} pixels per frame"
            )

    def refuse(self, path: Path | str, name: str, what: str) -> None:
        """Raise the one-line :class:`MediaError` of the limit ``max_<name>``."""
        limit = getattr(self, f"max_{name}")
        raise MediaError(
            f"{path}: {what}, over the limit of {limit:g} {name} per input; raise it with "
            f"--max-{name} or the config key data.media.max_{name} to accept it"
        )


DEFAULT_LIMITS = MediaLimits()
_PROTOCOL = re.compile(r"^[A-Za-z0-9+.-]+[:,]")


def _mp4_options(crf, fps) -> dict:
    """ffmpeg output options of every mp4 the project writes: H.264 (yuv420p) at ``crf`` and
    ``fps``, index at the front."""
    return {
        "vcodec": "libx264",
        "pix_fmt": "yuv420p",
        "crf": crf,
        "preset": "veryfast",
        "r": fps,
        "movflags": "+faststart",
        "format": "mp4",
    }


def local_file(path: Path | str, what: str = "media file") -> Path:
    """``path`` as an absolute local path, after refusing a name that ffmpeg would read as a
    protocol or URL (see the module doc) and anything but an existing regular file."""
    raw = os.fspath(path)
    if _PROTOCOL.match(raw):
        raise MediaError(
            f"{raw}: looks like an ffmpeg protocol or URL ({raw.split(':')[0].split(',')[0]}); "
            f"only local files are read (write ./{raw} for a local file of that name)"
        )
    p = Path(os.path.abspath(raw))
    if not p.exists():
        raise MediaError(f"{raw}: no such file")
    if p.is_dir():
        raise MediaError(f"{raw}: is a folder, a {what} was expected")
    if not p.is_file():
        raise MediaError(f"{raw}: not a regular file (a pipe or device?), a {what} was expected")
    return p


def file_url(path: Path | str) -> str:
    """What ffmpeg is given for a local path: ``file:`` + the absolute path (never a protocol)."""
    return "file:" + os.path.abspath(os.fspath(path))


def _input(path: Path | str, **kw):
    """An ffmpeg-python input of the local file ``path`` with only the file protocol allowed."""
    return _ffmpeg().input(file_url(path), protocol_whitelist="file", **kw)


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


PROBE_TIMEOUT_S = 60


def probe(
    path: Path | str,
    *,
    require_video: bool = False,
    require_audio: bool = False,
    limits: MediaLimits | None = DEFAULT_LIMITS,
) -> MediaInfo:
    """Streams, duration and fps of a media file (``ffmpeg -i``; no ffprobe needed).

    Raises :class:`MediaError` naming the file when its name looks like a protocol or URL,
    it is missing, not a regular file, empty, not media (e.g. a text file renamed ``.mp4``),
    truncated (an mp4 without its index), lacks a stream that is required, holds no samples /
    no duration, or exceeds ``limits`` (``None``: unbounded, for files this process wrote).
    """
    import subprocess

    shown = Path(path)
    local = local_file(path)
    if local.stat().st_size == 0:
        raise MediaError(f"{shown}: the file is empty (0 bytes)")
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-protocol_whitelist", "file", "-i", file_url(local)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"{shown}: ffmpeg could not read its header within {PROBE_TIMEOUT_S} s") from None
    path = shown
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
    if limits is not None:
        limits.check(info)
    return info


# ------------------------------------------------------------------------------------------
# atomic outputs
# ------------------------------------------------------------------------------------------


def _temp_beside(dest: Path) -> Path:
    """An empty temporary file beside ``dest`` with the normal permissions (not ``0600``):
    ffmpeg writes into it and it is renamed onto ``dest``."""
    from ..fileio import file_mode

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def _run_atomic(stream_fn, dest: Path, what: str, src: Path | str, input_bytes: bytes | None = None) -> Path:
    """Run ``stream_fn(tmp_path)`` (an ffmpeg-python output stream) and rename tmp → dest."""
    ffmpeg = _ffmpeg()
    dest = Path(dest)
    tmp = _temp_beside(dest)
    try:
        stream = stream_fn(file_url(tmp)).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
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


def extract_audio(
    src: Path | str, dest: Path | str, sr: int = 16000, *, limits: MediaLimits = DEFAULT_LIMITS
) -> Path:
    """The first audio stream of ``src`` as a mono 16-bit WAV at ``sr`` (atomic).  ``src`` is
    probed against ``limits`` first, and ffmpeg stops after ``limits.max_seconds`` (+1 s) even
    when the header understated the length; a longer result is refused."""
    src = Path(src)
    probe(src, require_audio=True, limits=limits)
    out = _run_atomic(
        lambda tmp: _input(src).output(
            tmp, ac=1, ar=sr, acodec="pcm_s16le", vn=None, format="wav", t=limits.max_seconds + 1
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
    if len(data) > limits.max_seconds * sr:
        Path(out).unlink(missing_ok=True)
        limits.refuse(src, "seconds", f"lasts more than {limits.max_seconds:g} s (its header said less)")
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
    limits: MediaLimits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, MediaInfo]:
    """All frames of ``path`` as uint8 RGB ``(N, H, W, 3)`` (optionally resampled to ``fps``
    and scaled to ``size`` = (W, H)), and the probe.  With ``check_complete`` a video that
    decodes to clearly fewer frames than its header promises (a truncated file) or with
    decoder errors raises :class:`MediaError`.  ``path`` is probed against ``limits`` before
    decoding, and ffmpeg stops after ``limits.max_seconds`` and ``limits.max_frames`` (+1)
    frames, so a header that understates the length is refused, not decoded whole."""
    path = Path(path)
    info = probe(path, require_video=True, limits=limits)
    v = info.video
    w, h = size if size else (v.width, v.height)
    if not w or not h:
        raise MediaError(f"{path}: could not read the frame size of its video stream")
    ffmpeg = _ffmpeg()
    stream = _input(path, t=limits.max_seconds + 1)
    if fps:
        stream = stream.filter("fps", fps=fps)
    if size:
        stream = stream.filter("scale", w, h)
    stream = stream.output(
        "pipe:", format="rawvideo", pix_fmt="rgb24", **{"frames:v": limits.max_frames + 1}
    ).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    try:
        out, err = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise MediaError(f"{path}: ffmpeg could not decode its video ({_last_lines(e.stderr)})") from None
    n = len(out) // (w * h * 3)
    if n == 0:
        raise MediaError(f"{path}: no video frame could be decoded")
    if n > limits.max_frames:
        limits.refuse(
            path, "frames", f"decodes to more than {limits.max_frames} frames (its header said less)"
        )
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
        video = ffmpeg.input(
            "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps, protocol_whitelist="pipe"
        )
        kw = _mp4_options(crf, fps)
        if wav is not None:
            audio = _input(wav)
            return ffmpeg.output(
                video, audio, tmp, acodec="aac", audio_bitrate=audio_bitrate, shortest=None, **kw
            )
        return ffmpeg.output(video, tmp, **kw)

    if wav is not None:
        probe(wav, require_audio=True, limits=None)
    return _run_atomic(build, dest, "encode the mp4", dest, input_bytes=frames.tobytes())


def mux_audio(video: Path | str, wav: Path | str, dest: Path | str, *, offset_s: float = 0.0) -> Path:
    """Copy ``video``'s picture and put ``wav`` (delayed by ``offset_s`` seconds, or advanced
    when negative) as its audio, re-encoded to AAC (atomic)."""
    ffmpeg = _ffmpeg()
    probe(video, require_video=True)
    probe(wav, require_audio=True)

    def build(tmp: str):
        v = _input(video).video
        a = (
            _input(wav, itsoffset=offset_s).audio
            if offset_s > 0
            else _input(wav, ss=-offset_s).audio
            if offset_s < 0
            else _input(wav).audio
        )
        return ffmpeg.output(v, a, tmp, vcodec="copy", acodec="aac", format="mp4", shortest=None)

    return _run_atomic(build, Path(dest), "mux the audio", video)


# ------------------------------------------------------------------------------------------
# streaming: frames in bounded chunks, an encoder fed chunk by chunk
# ------------------------------------------------------------------------------------------

_CORRUPT_MARKS = ("invalid nal", "error while decoding", "partial file", "corrupt", "truncat")


class _Pump:
    """A background thread that moves items between a subprocess pipe and a bounded queue, so
    ffmpeg works while the caller computes; ``seconds`` is the time it spent in the pipe."""

    def __init__(self, target, depth: int):
        import queue
        import threading

        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)

    def start(self) -> _Pump:
        self.thread.start()
        return self

    def _run(self, target) -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            self.error = e


def iter_frames(
    path: Path | str,
    *,
    fps: float | None = None,
    chunk: int = 16,
    info: MediaInfo | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
    prefetch: int = 2,
    timing: dict | None = None,
):
    """The frames of ``path`` as uint8 RGB chunks ``(k <= chunk, H, W, 3)``, in order, decoded by
    one ffmpeg process that runs ahead of the caller by at most ``prefetch`` chunks (memory
    does not grow with the video's length).  ``path`` is probed against ``limits`` (unless its
    probe ``info`` is given), ffmpeg stops after ``limits.max_seconds`` and
    ``limits.max_frames`` (+1) frames, and a video that decodes to clearly fewer frames than
    its header promises, or with decoder errors, raises :class:`MediaError` after its last
    chunk, as :func:`decode_frames` does.  ``timing["decode"]`` accumulates the seconds spent
    waiting on ffmpeg's output."""
    import queue
    import subprocess
    import time

    path = Path(path)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if info is None:
        info = probe(path, require_video=True, limits=limits)
    v = info.video
    if v is None or not v.width or not v.height:
        raise MediaError(f"{path}: could not read the frame size of its video stream")
    w, h = v.width, v.height
    stream = _input(path, t=limits.max_seconds + 1)
    if fps:
        stream = stream.filter("fps", fps=fps)
    stream = stream.output(
        "pipe:", format="rawvideo", pix_fmt="rgb24", **{"frames:v": limits.max_frames + 1}
    ).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    args = stream.compile(cmd=ffmpeg_exe())
    frame_bytes = w * h * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        done = object()

        def read() -> None:
            while True:
                t0 = time.perf_counter()
                buf = bytearray(chunk * frame_bytes)
                view, got = memoryview(buf), 0
                while got < len(buf):
                    k = proc.stdout.readinto(view[got:])
                    if not k:
                        break
                    got += k
                pump.seconds += time.perf_counter() - t0
                n = got // frame_bytes
                if n:
                    pump.queue.put(np.frombuffer(buf, np.uint8, n * frame_bytes).reshape(n, h, w, 3))
                if got < len(buf):
                    pump.queue.put(done)
                    return

        pump = _Pump(read, prefetch).start()
        n = 0
        try:
            while True:
                item = pump.queue.get()
                if item is done:
                    break
                n += len(item)
                if n > limits.max_frames:
                    limits.refuse(
                        path,
                        "frames",
                        f"decodes to more than {limits.max_frames} frames (its header said less)",
                    )
                yield item
            pump.thread.join()
            if pump.error is not None:
                raise pump.error
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                while pump.thread.is_alive():  # let the reader see the end of the pipe
                    try:
                        pump.queue.get(timeout=0.1)
                    except queue.Empty:
                        pass
                proc.wait()
            proc.stdout.close()
            if timing is not None:
                timing["decode"] = timing.get("decode", 0.0) + pump.seconds
        err.seek(0)
        errs = err.read().decode("utf-8", "replace").strip()
    if rc != 0:
        raise MediaError(f"{path}: ffmpeg could not decode its video ({_last_lines(errs)})")
    if n == 0:
        raise MediaError(f"{path}: no video frame could be decoded")
    expected = round(info.duration * (fps or v.fps or 0)) if info.duration else 0
    if expected and n < 0.9 * expected - 1:
        raise MediaError(
            f"{path}: truncated or corrupt video: {n} frames decoded, {expected} expected from its header"
        )
    if errs and any(k in errs.lower() for k in _CORRUPT_MARKS):
        raise MediaError(f"{path}: corrupt video stream ({_last_lines(errs, 1)})")


class Mp4Writer:
    """An H.264 yuv420p (+ AAC) mp4 written chunk by chunk (atomic): :meth:`write` hands uint8
    RGB frames ``(k, H, W, 3)`` to one ffmpeg process through a queue of at most ``depth``
    chunks (encoding overlaps the caller's work, memory stays bounded); :meth:`close`
    finishes the file and renames it over ``dest``; :meth:`abort` (or an exception inside a
    ``with`` block) kills ffmpeg and leaves nothing.  The audio ``wav`` is muxed whole: the
    file lasts as long as the longer of the two streams (no ``-shortest``).
    ``seconds`` is the time spent handing frames to ffmpeg and waiting for it to finish."""

    def __init__(
        self,
        dest: Path | str,
        width: int,
        height: int,
        fps: float,
        wav: Path | str | None = None,
        *,
        crf: int = 20,
        audio_bitrate: str = "96k",
        depth: int = 2,
    ):
        import subprocess

        if width % 2 or height % 2 or width < 2 or height < 2:
            raise ValueError(f"H.264 yuv420p needs even sides, got {width}x{height}")
        if wav is not None:
            probe(wav, require_audio=True, limits=None)
        ffmpeg = _ffmpeg()
        self.dest, self.size, self.seconds, self.frames = Path(dest), (height, width), 0.0, 0
        self.tmp = _temp_beside(self.dest)
        video = ffmpeg.input(
            "pipe:",
            format="rawvideo",
            pix_fmt="rgb24",
            s=f"{width}x{height}",
            r=fps,
            protocol_whitelist="pipe",
        )
        kw = _mp4_options(crf, fps)
        tmp = file_url(self.tmp)
        if wav is not None:
            out = ffmpeg.output(video, _input(wav), tmp, acodec="aac", audio_bitrate=audio_bitrate, **kw)
        else:
            out = ffmpeg.output(video, tmp, **kw)
        args = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(
            cmd=ffmpeg_exe(), overwrite_output=True
        )
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err
            )
        except BaseException:
            self._err.close()
            self.tmp.unlink(missing_ok=True)
            raise
        self._closed = False
        self._pump = _Pump(self._feed, depth)
        self._pump.start()

    def _feed(self) -> None:
        import time

        while True:
            item = self._pump.queue.get()
            if item is None:
                return
            t0 = time.perf_counter()
            try:
                self.proc.stdin.write(item)
            except BrokenPipeError:  # ffmpeg ended early: its error is read in close()
                return
            finally:
                self._pump.seconds += time.perf_counter() - t0

    def write(self, frames: np.ndarray) -> None:
        """Queue uint8 RGB ``frames`` (k, H, W, 3) of this writer's size for encoding."""
        frames = np.ascontiguousarray(np.asarray(frames, dtype=np.uint8))
        if frames.ndim != 4 or frames.shape[1:] != (*self.size, 3):
            raise ValueError(f"frames must be (k, {self.size[0]}, {self.size[1]}, 3), got {frames.shape}")
        if self._pump.error is not None:
            raise self._pump.error
        if not self._pump.thread.is_alive():
            self.close()  # ffmpeg stopped: raises its error
        self._pump.queue.put(memoryview(frames).cast("B"))
        self.frames += len(frames)

    def close(self) -> Path:
        """Finish the file (atomic rename over ``dest``); raises :class:`MediaError` when ffmpeg failed."""
        import time

        if self._closed:
            raise ValueError(f"{self.dest}: the writer is closed")
        self._closed = True
        try:
            t0 = time.perf_counter()
            if self._pump.thread.is_alive():
                self._pump.queue.put(None)
            self._pump.thread.join()
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = self.proc.wait()
            self.seconds = self._pump.seconds + (time.perf_counter() - t0)
            if self._pump.error is not None:
                raise self._pump.error
            self._err.seek(0)
            errs = self._err.read().decode("utf-8", "replace")
            if rc != 0:
                raise MediaError(f"{self.dest}: ffmpeg could not encode the mp4 ({_last_lines(errs)})")
            if self.frames == 0 or not self.tmp.exists() or self.tmp.stat().st_size == 0:
                raise MediaError(f"{self.dest}: ffmpeg wrote nothing while trying to encode the mp4")
            os.replace(self.tmp, self.dest)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        finally:
            self._err.close()
        return self.dest

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file (nothing is written to ``dest``)."""
        if self._closed:
            return
        import queue

        self._closed = True
        self.proc.kill()
        while self._pump.thread.is_alive():  # wake the feeder: it ends on None or a broken pipe
            try:
                self._pump.queue.put_nowait(None)
            except queue.Full:
                try:
                    self._pump.queue.get_nowait()
                except queue.Empty:
                    pass
            self._pump.thread.join(0.05)
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait()
        self._err.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()
