"""Offline speech: espeak-ng through ctypes (the espeakng-loader wheel), phoneme events and the
mouth-openness track they give.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Sequence

import numpy as np

from ...data.aligned import DataError
from .lrs2 import FPS

# ==========================================================================================
# speech synthesis (espeak-ng through ctypes; the espeakng-loader wheel)
# ==========================================================================================


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SYNTH_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)
_EV_PHONEME, _EV_WORD = 7, 1
_AUDIO_OUTPUT_SYNCHRONOUS, _INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 2, 0x0001, 0x8000
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_RATE, _PITCH = 1, 3


class Espeak:
    """espeak-ng in synchronous mode with phoneme events (one process-wide instance)."""

    _lock = threading.Lock()
    _instance: Espeak | None = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:  # pragma: no cover - a declared dependency
            raise DataError(
                "the talking-face demo needs espeakng-loader (pip install espeakng-loader)"
            ) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        sr = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            espeakng_loader.get_data_path().encode(),
            _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT,
        )
        if sr <= 0:
            raise DataError("espeak-ng failed to initialise (its voice data in espeakng-loader is missing?)")
        self.lib, self.sample_rate = lib, int(sr)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._cb = _SYNTH_CB(self._callback)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def _callback(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            e = events[i]
            if e.type == _EV_PHONEME:
                self._events.append(
                    (e.type, int(e.sample), bytes(e.id).split(b"\0")[0].decode("ascii", "replace"))
                )
            i += 1
        return 0

    def synthesize(
        self, text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, seed: int | None = None
    ) -> tuple[np.ndarray, list[tuple[float, str]]]:
        """(float32 samples at :attr:`sample_rate`, [(time in s, phoneme mnemonic), …]).

        espeak-ng's variant voices (``+f2``, ``+f3``, ...) add random breath noise: ``seed`` seeds
        its generator first, so a process that makes the same calls in the same order gets the
        same samples (the synthesiser keeps state from call to call, so it is the sequence that
        repeats, not each call on its own)."""
        with self._lock:
            if seed is not None:
                self.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            if self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
                raise DataError(f"espeak-ng could not synthesise {text!r}")
            self.lib.espeak_Synchronize()
            wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events = [(s / self.sample_rate, ph) for _, s, ph in self._events]
        return wav.astype(np.float32) / 32768.0, events


def _strip_stress(ph: str) -> str:
    """An espeak phoneme mnemonic without its stress marks (primary ', secondary , ; % =)."""
    return ph.lstrip("',%=")


def phoneme_openness(ph: str) -> float:
    """How far the mouth opens for an espeak phoneme mnemonic (0 closed … 1 wide)."""
    p = _strip_stress(ph)
    if not p or p[0] == "_":
        return 0.0
    c = p[0]
    if c in "mbp":
        return 0.0
    if c in "fv":
        return 0.15
    if c in "aA":
        return 1.0
    if c in "O0VQ":
        return 0.85
    if c in "@3Ee":
        return 0.7
    if c in "Ii":
        return 0.55
    if c in "uUow":
        return 0.5
    return 0.3


def openness_track(
    wav: np.ndarray, sr: int, phonemes: Sequence[tuple[float, str]], n_frames: int, fps: float = FPS
) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] from phoneme timings (seconds in ``wav``) and the envelope."""
    hop = int(sr * 0.005)
    n = math.ceil(n_frames / fps * sr / hop)
    x = np.zeros(n * hop + hop, np.float64)
    x[: min(len(wav), len(x))] = wav[: len(x)]
    # envelope: RMS over 10 ms centred on each 5 ms step
    sq = np.convolve(x**2, np.ones(2 * hop) / (2 * hop), mode="same")
    rms = np.sqrt(sq[np.arange(n) * hop + hop // 2])
    ref = np.percentile(rms, 95) if np.any(rms > 0) else 1.0
    gain = np.sqrt(np.clip(rms / max(ref, 1e-9), 0, 1))
    gain[rms < 0.05 * ref] = 0.0
    t = (np.arange(n) + 0.5) * hop / sr
    shape = np.zeros(n)
    bilabial = np.zeros(n, bool)
    times = np.asarray([p[0] for p in phonemes]) if phonemes else np.zeros(0)
    if len(times):
        k = np.searchsorted(times, t, side="right") - 1
        vals = np.asarray([phoneme_openness(p[1]) for p in phonemes])
        isb = np.asarray([_strip_stress(p[1])[:1] in ("m", "b", "p") for p in phonemes])
        ok = k >= 0
        shape[ok] = vals[k[ok]]
        bilabial[ok] = isb[k[ok]]
    o = shape * gain
    frame_of = np.minimum((t * fps).astype(int), n_frames - 1)
    per = np.bincount(frame_of, weights=o, minlength=n_frames) / np.maximum(
        np.bincount(frame_of, minlength=n_frames), 1
    )
    bil = np.bincount(frame_of, weights=bilabial.astype(float), minlength=n_frames) / np.maximum(
        np.bincount(frame_of, minlength=n_frames), 1
    )
    per = np.convolve(np.pad(per, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    per[bil > 0.5] = np.minimum(per[bil > 0.5], 0.05)
    return np.clip(per[:n_frames], 0.0, 1.0)
