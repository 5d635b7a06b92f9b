"""Mouth openness read from the pixels of a face frame, and the demo's lip-sync score built on it.

The offline talking-face demo (:mod:`.demo`) opens each face's mouth by a recorded amount per
frame (``openness`` of every clip in ``demo_talking.json``): the jaw is displaced down and the
gap painted as a dark cavity of colour :data:`CAVITY_RGB`, whose upper part shows teeth of colour
:data:`TOOTH_RGB` once the mouth is more than 0.3 open.  A frame's **pixel-read openness**
(:func:`frame_openness`) is how much of the mouth region of the 96 x 96 face crop (rows
:data:`ROWS`, columns :data:`COLS` as fractions of the side) shows the dark cavity.  Each pixel
of the region is unmixed against the face's own skin: with ``skin`` the median colour (per
channel) of the lower face (rows :data:`SKIN_ROWS`, columns :data:`SKIN_COLS`), ``rgb - skin``
is written as ``a (CAVITY_RGB - skin) + b (TOOTH_RGB - skin)`` by least squares (the
pseudo-inverse, defined for any skin colour); the openness is the mean over the region of the
cavity fraction ``a`` clipped to [0, 1].  The teeth are modelled, so that their pixels are not
misread as cavity, but not counted: the teeth colour lies on the line from the skin to white, so
any pixel lighter than the skin (a highlight, the pale lips a generator draws on a closed mouth)
reads as teeth, and counted with the cavity they made generated frames read as open while their
mouths closed (docs/wav2lip.md).  Taking the skin colour from the frame itself adapts the reading
to each face's tone and lighting.  Region and skin area were chosen on the *training* clips of
the demo and are fixed constants; ``tests/test_talking.py`` checks them on the test clips (real
frames correlate with the recorded track at 0.9 or more; the reference frames the evaluation
gives do not).

The **openness correlation** of generated frames (:class:`OpennessMetric`, result key
``openness``) is, per test clip, the Pearson correlation of the generated frames' pixel-read
openness with the clip's recorded track, averaged over clips (``r``); copying the reference
frame (which ignores the audio) scores near 0, real frames near the validation value.  Its
noise is a bootstrap over clips (:func:`unetprune.metrics.noise.openness_replicates`).  Outside the demo (no ``demo_talking.json`` beside the
preprocessed clips) the key is None.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...metrics import plugins

#: the painted cavity colour of the demo renderer (RGB)
CAVITY_RGB = (45.0, 12.0, 18.0)
#: the painted teeth colour of the demo renderer (RGB)
TOOTH_RGB = (215.0, 210.0, 200.0)
#: the mouth region, as fractions of the face crop's side (rows from the top, columns from the left)
ROWS = (0.65, 0.85)
COLS = (0.3, 0.75)
#: where the skin colour is read (its per-channel median), as fractions of the side: the lower face
SKIN_ROWS = (0.5, 1.0)
SKIN_COLS = (0.2, 0.8)
#: the manifest of the demo's clips, beside the ``preprocessed/`` folder
MANIFEST = "demo_talking.json"
DEFINITION = (
    "per test clip, the Pearson correlation of the generated frames' pixel-read mouth openness (the "
    f"mean over rows {ROWS[0]:g}-{ROWS[1]:g} and columns {COLS[0]:g}-{COLS[1]:g} of the face of each "
    "pixel's fraction of the demo's cavity colour, clipped to [0, 1], unmixed by least squares against "
    f"the median skin colour of rows {SKIN_ROWS[0]:g}-{SKIN_ROWS[1]:g} and columns {SKIN_COLS[0]:g}-"
    f"{SKIN_COLS[1]:g} and the teeth colour) with the clip's recorded openness track; mean over clips"
)


def _band(x: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    """The pixels of (N, S, S, 3) frames in a band of rows and columns (fractions of the side),
    flattened to (N, P, 3)."""
    s = x.shape[1]
    band = x[:, int(rows[0] * s) : int(rows[1] * s), int(cols[0] * s) : int(cols[1] * s)]
    return band.reshape(len(x), band.shape[1] * band.shape[2], 3)


def frame_openness(frames: np.ndarray) -> np.ndarray:
    """(N,) pixel-read openness (module docstring) of RGB uint8 face frames (N, 3, S, S) or (N, S, S, 3)."""
    x = np.asarray(frames)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of RGB frames (N, 3, S, S) or (N, S, S, 3), got {x.shape}")
    if x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    x = x.astype(np.float64)
    skin = np.median(_band(x, SKIN_ROWS, SKIN_COLS), axis=1)  # (N, 3)
    basis = np.stack([np.asarray(CAVITY_RGB) - skin, np.asarray(TOOTH_RGB) - skin], axis=2)  # (N, 3, 2)
    ab = np.einsum("nkc,npc->npk", np.linalg.pinv(basis), _band(x, ROWS, COLS) - skin[:, None])
    return np.clip(ab[..., 0], 0.0, 1.0).mean(1)


def pearson(a, b) -> float | None:
    """Pearson correlation of two equal-length sequences (None when either is constant or < 3 long)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"cannot correlate {len(a)} with {len(b)} values")
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def recorded_tracks(root: Path | str) -> dict[str, list[float]] | None:
    """``{"<speaker>/<clip>": openness per frame}`` of the demo manifest beside (or in) ``root``;
    None when there is none (not the demo)."""
    root = Path(root)
    for p in (root / MANIFEST, root.parent / MANIFEST):
        if p.is_file():
            d = json.loads(p.read_text())
            return {f"{c['speaker']}/{c['clip']}": list(c["openness"]) for c in d.get("clips", [])}
    return None


def clip_correlations(frames: np.ndarray, clips: list[dict], tracks: dict[str, list[float]]) -> list[dict]:
    """Per clip of ``clips`` (``name``, ``n_frames``, in frame order of ``frames``): ``{"name",
    "r", "n_frames"}`` (``r`` None for a clip without a track or with a constant one)."""
    vals = frame_openness(frames)
    out, i = [], 0
    for c in clips:
        n = int(c["n_frames"])
        track = tracks.get(c["name"])
        r = pearson(vals[i : i + n], track[:n]) if track is not None and len(track) >= n else None
        out.append({"name": c["name"], "r": r, "n_frames": n})
        i += n
    return out


class OpennessMetric(plugins.Metric):
    """The demo's lip-sync score from the ground truth (module docstring): result key
    ``openness`` = ``{"r", "clips", "definition"}`` or None outside the demo."""

    name, keys = "openness", ("openness",)

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        self.tracks = recorded_tracks(eval_set.root)
        self._last = None

    def _per_clip(self, fakes) -> list[dict] | None:
        if self.tracks is None:
            return None
        return clip_correlations(fakes.detach().cpu().numpy(), self.eval_set.clips, self.tracks)

    def score(self, fakes, generator):
        per = self._per_clip(fakes)
        rs = [c["r"] for c in per or [] if c["r"] is not None]
        self._last = rs
        if not rs:
            return {"openness": None}
        return {"openness": {"r": float(np.mean(rs)), "clips": per, "definition": DEFINITION}}


plugins.register_metric(OpennessMetric)
