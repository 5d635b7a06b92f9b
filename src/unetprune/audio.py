"""Audio front-end of Wav2Lip and of the LSE network (numpy/scipy; no librosa).

Mel spectrogram (Wav2Lip; reference Rudrabha/Wav2Lip ``audio.py`` + ``hparams.py``, which
call librosa 0.7):

1. pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (``scipy.signal.lfilter``);
2. STFT: n_fft 800, hop 200, periodic Hann window of 800, centred frames with
   reflection padding of n_fft/2 (librosa 0.7's ``stft`` defaults) → ``1 + len // 200``
   frames, 80 per second at 16 kHz;
3. magnitude → 80 mel bands, fmin 55, fmax 7600 (Slaney mel scale, area-normalised
   triangles: librosa's ``filters.mel`` defaults);
4. ``20 log10(max(1e-5, ·)) - 20`` dB (min level -100 dB, reference level 20 dB);
5. symmetric normalisation ``8 (S + 100) / 100 - 4`` clipped to [-4, 4].

Layout: ``melspectrogram(wav)`` is (80, T), ``T`` at 80 Hz.  A video frame ``f`` at
``fps`` maps to mel index ``int(80 * f / fps)`` (:func:`mel_window_start`); a window is 16
mel frames (0.2 s = 5 frames at 25 fps).  Three crops follow the reference:

* :func:`crop_mel_window` — the expert's window for frames ``f..f+4`` (``crop_audio_window``);
* :func:`segmented_mels` — the generator's per-frame windows for frames ``f..f+4``, each
  starting one frame earlier (``get_segmented_mels``: windows at ``f-1..f+3``);
* :func:`inference_mel_chunks` — ``inference.py``: one window per video frame ``i`` at
  ``int(i * 80 / fps)``, the last one flush with the end of the spectrogram.

MFCCs (LSE-D / LSE-C; syncnet_python runs ``python_speech_features.mfcc(audio, 16000)`` on
the int16 samples): pre-emphasis 0.97, 25 ms rectangular frames every 10 ms (100 Hz;
the tail zero-padded), 512-point power spectrum / 512, 26 HTK-mel triangles 0–8 kHz,
natural log, orthonormal DCT-II, 13 coefficients, sinusoidal lifter 22, and ``c0``
replaced by the log frame energy.  :func:`syncnet_mfcc` is (13, T); frame ``f`` at 25 fps
uses MFCC columns ``4f .. 4f+19`` (:func:`mfcc_window`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal

from .errors import UserFacingError


@dataclass(frozen=True)
class MelParams:
    """Wav2Lip's ``hparams`` for the mel spectrogram."""

    sample_rate: int = 16000
    n_fft: int = 800
    hop_size: int = 200
    win_size: int = 800
    num_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    max_abs_value: float = 4.0

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_size  # 80


HP = MelParams()
FPS = 25
MEL_STEP = 16  # mel frames per window (syncnet_mel_step_size)
SYNC_T = 5  # video frames per window (syncnet_T)
MFCC_RATE = 100  # MFCC frames per second (10 ms step)
MFCC_STEP = 20  # MFCC frames per LSE window (5 frames at 25 fps)


class AudioError(UserFacingError, ValueError):
    """Unreadable or unusable audio (the message names the file or says what is short)."""


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------


def read_wav(path: Path | str, sr: int = 16000) -> np.ndarray:
    """A WAV file as float32 mono in [-1, 1] at ``sr`` (polyphase resampling when needed)."""
    from scipy.io import wavfile

    path = Path(path)
    try:
        rate, data = wavfile.read(path)
    except Exception as e:  # noqa: BLE001 — scipy raises ValueError, OSError, …
        raise AudioError(f"{path}: not a readable WAV file ({e})") from None
    if data.dtype == np.int16:
        x = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        x = data.astype(np.float32) / 2147483648.0
    elif data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    else:
        x = data.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise AudioError(f"{path}: the WAV file holds no samples")
    if rate != sr:
        g = math.gcd(int(rate), int(sr))
        x = signal.resample_poly(x, sr // g, int(rate) // g).astype(np.float32)
    return x


# ------------------------------------------------------------------------------------------
# mel spectrogram (Wav2Lip)
# ------------------------------------------------------------------------------------------


def preemphasis(wav: np.ndarray, k: float = HP.preemphasis) -> np.ndarray:
    return signal.lfilter([1.0, -k], [1.0], wav)


def hz_to_mel_slaney(f):
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp
    )


def mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_band_edges(hp: MelParams = HP) -> np.ndarray:
    """The ``num_mels + 2`` band edges in Hz (band ``i`` peaks at ``edges[i + 1]``)."""
    mels = np.linspace(hz_to_mel_slaney(hp.fmin), hz_to_mel_slaney(hp.fmax), hp.num_mels + 2)
    return mel_to_hz_slaney(mels)


@lru_cache(maxsize=8)
def mel_basis(hp: MelParams = HP) -> np.ndarray:
    """(num_mels, 1 + n_fft/2) Slaney-normalised triangular filters (as ``librosa.filters.mel``)."""
    if hp.fmax > hp.sample_rate / 2:
        raise ValueError(f"fmax {hp.fmax} is above the Nyquist frequency {hp.sample_rate / 2}")
    fft_freqs = np.linspace(0.0, hp.sample_rate / 2, 1 + hp.n_fft // 2)
    edges = mel_band_edges(hp)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    w.setflags(write=False)
    return w


def stft_magnitude(y: np.ndarray, hp: MelParams = HP) -> np.ndarray:
    """|STFT| (1 + n_fft/2, 1 + len // hop): centred, reflection-padded, periodic Hann."""
    y = np.asarray(y, dtype=np.float64)
    pad = hp.n_fft // 2
    if y.size <= pad:
        raise AudioError(f"audio of {y.size} samples is too short for an STFT (needs more than {pad})")
    y = np.pad(y, pad, mode="reflect")
    window = signal.get_window("hann", hp.win_size, fftbins=True)
    if hp.win_size < hp.n_fft:  # centre the window inside n_fft (librosa's pad_center)
        lpad = (hp.n_fft - hp.win_size) // 2
        window = np.pad(window, (lpad, hp.n_fft - hp.win_size - lpad))
    n_frames = 1 + (y.size - hp.n_fft) // hp.hop_size
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n_frames, hp.n_fft), strides=(y.strides[0] * hp.hop_size, y.strides[0]), writeable=False
    )
    return np.abs(np.fft.rfft(frames * window, n=hp.n_fft, axis=1)).T


def amp_to_db(x: np.ndarray, hp: MelParams = HP) -> np.ndarray:
    min_level = math.pow(10.0, hp.min_level_db / 20.0)
    return 20.0 * np.log10(np.maximum(min_level, x))


def normalize(s_db: np.ndarray, hp: MelParams = HP) -> np.ndarray:
    """Symmetric normalisation of dB values to [-max_abs, max_abs], clipped."""
    m = hp.max_abs_value
    return np.clip(2 * m * ((s_db - hp.min_level_db) / (-hp.min_level_db)) - m, -m, m)


def melspectrogram(wav: np.ndarray, hp: MelParams = HP) -> np.ndarray:
    """Wav2Lip's normalised mel spectrogram, float32 (num_mels, 1 + len(wav) // hop) in [-4, 4]."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"expected mono audio (1-D), got shape {wav.shape}")
    mag = stft_magnitude(preemphasis(wav.astype(np.float64), hp.preemphasis), hp)
    s = amp_to_db(mel_basis(hp) @ mag, hp) - hp.ref_level_db
    out = normalize(s, hp).astype(np.float32)
    if not np.isfinite(out).all():
        raise AudioError("the mel spectrogram contains NaN/inf (is the audio finite?)")
    return out


# ------------------------------------------------------------------------------------------
# windows (video frame ↔ mel index)
# ------------------------------------------------------------------------------------------


def mel_window_start(frame: int, fps: float = FPS, hp: MelParams = HP) -> int:
    """First mel frame of video frame ``frame``: ``int(80 * frame / fps)`` (the reference's mapping)."""
    return int(hp.frames_per_second * (frame / float(fps)))


def crop_mel_window(mel: np.ndarray, start_frame: int, fps: float = FPS) -> np.ndarray | None:
    """The expert's (80, 16) window for video frames ``start_frame .. start_frame+4``;
    ``None`` when the spectrogram ends before the window does (as the reference skips)."""
    s = mel_window_start(start_frame, fps)
    if start_frame < 0 or s + MEL_STEP > mel.shape[1]:
        return None
    return mel[:, s : s + MEL_STEP]


def segmented_mels(mel: np.ndarray, start_frame: int, T: int = SYNC_T, fps: float = FPS) -> np.ndarray | None:
    """The generator's per-frame windows (T, 80, 16) for frames ``start_frame .. +T-1``:
    frame ``f``'s window starts at frame ``f - 1`` (reference ``get_segmented_mels``);
    ``None`` for ``start_frame < 1`` or past the end."""
    if start_frame < 1:
        return None
    out = []
    for f in range(start_frame, start_frame + T):
        w = crop_mel_window(mel, f - 1, fps)
        if w is None:
            return None
        out.append(w)
    return np.stack(out)


def inference_mel_chunks(mel: np.ndarray, fps: float = FPS) -> list[np.ndarray]:
    """One (80, 16) window per video frame, as the reference ``inference.py`` cuts them:
    frame ``i`` starts at ``int(i * 80 / fps)``; the last window is flush with the end."""
    if mel.shape[1] < MEL_STEP:
        raise AudioError(
            f"the audio is shorter than one window ({mel.shape[1]} mel frames < {MEL_STEP}, "
            f"i.e. under {MEL_STEP / HP.frames_per_second:.2f} s)"
        )
    chunks, i = [], 0
    mult = HP.frames_per_second / float(fps)
    while True:
        s = int(i * mult)
        if s + MEL_STEP > mel.shape[1]:
            chunks.append(mel[:, mel.shape[1] - MEL_STEP :])
            return chunks
        chunks.append(mel[:, s : s + MEL_STEP])
        i += 1


# ------------------------------------------------------------------------------------------
# MFCC (syncnet_python / LSE)
# ------------------------------------------------------------------------------------------


def _hz_to_mel_htk(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mfcc_filterbank(
    nfilt: int = 26, nfft: int = 512, sr: int = 16000, lowfreq: float = 0.0, highfreq: float | None = None
) -> np.ndarray:
    """python_speech_features' triangles on FFT bins (nfilt, nfft // 2 + 1)."""
    highfreq = highfreq or sr / 2
    mels = np.linspace(_hz_to_mel_htk(lowfreq), _hz_to_mel_htk(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz_htk(mels) / sr).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        for i in range(a, b):
            fb[j, i] = (i - a) / (b - a)
        for i in range(b, c):
            fb[j, i] = (c - i) / (c - b)
    fb.setflags(write=False)
    return fb


def syncnet_mfcc(
    wav: np.ndarray,
    sr: int = 16000,
    numcep: int = 13,
    nfilt: int = 26,
    nfft: int = 512,
    winlen: float = 0.025,
    winstep: float = 0.01,
    preemph: float = 0.97,
    ceplifter: int = 22,
) -> np.ndarray:
    """MFCCs as syncnet_python computes them, (numcep, n_frames) float32 at 100 Hz.

    Integer input (int16 samples, as ``scipy.io.wavfile`` reads them) is used as is; float
    input in [-1, 1] is scaled by 32768 to the same int16 scale (the scale shifts only the
    log energies: ``c0``).
    """
    from scipy.fft import dct

    x = np.asarray(wav)
    if x.ndim != 1:
        raise AudioError(f"expected mono audio (1-D), got shape {x.shape}")
    x = x.astype(np.float64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float64) * 32768.0
    if x.size == 0:
        raise AudioError("no audio samples")
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen = math.floor(winlen * sr + 0.5)
    fstep = math.floor(winstep * sr + 0.5)
    n = 1 if x.size <= flen else 1 + math.ceil((x.size - flen) / fstep)
    x = np.concatenate([x, np.zeros((n - 1) * fstep + flen - x.size)])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = x[idx]
    pspec = np.abs(np.fft.rfft(frames, nfft, axis=1)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = pspec @ mfcc_filterbank(nfilt, nfft, sr).T
    feat = np.where(feat == 0, eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep = cep * lift
    cep[:, 0] = np.log(energy)
    return cep.T.astype(np.float32)


def mfcc_window(mfcc: np.ndarray, frame: int, fps: float = FPS) -> np.ndarray | None:
    """The (13, 20) MFCC window of video frames ``frame .. frame+4`` (columns ``4·frame ..``
    at 25 fps, as syncnet_python); ``None`` past the end."""
    s = round(frame * MFCC_RATE / float(fps))
    if frame < 0 or s + MFCC_STEP > mfcc.shape[1]:
        return None
    return mfcc[:, s : s + MFCC_STEP]
