"""Sample videos of a Wav2Lip experiment: the same test clip through every model, side by side.

``figures/samples.mp4`` — one H.264 + AAC video at 25 fps with the clip's own audio; tiles
left to right: the real face, the original generator, then every variant (inner/cut first,
then the matched global baselines), each labelled.  ``figures/samples_video.png`` — the same
tiles at a few moments of the clip (rows), for readers who cannot play the video.

Every tile is generated exactly as the evaluation generates it (:class:`unetprune.families.wav2lip.datasets.
TalkingEvalSet`: the lower half masked, the identity reference half a clip away, the frame's
mel window; ``evaluate.mode``, seeded), so what is seen is what was scored.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import numpy as np

from ...errors import UserFacingError
from ...layout import DEFAULT_BASE, ORIGINAL, Layout

TILE = 192  # pixels per tile side (the 96 px faces, upscaled x2 for viewing)
LABEL_H = 28  # label bar above the tiles
MAX_FRAMES = 125  # at most 5 s of the clip
GRID_ROWS = 4  # moments of the clip in the PNG


class VideoError(UserFacingError, ValueError):
    """A sample video that cannot be made (one line: what is missing and how to make it)."""


def _label_bar(text: str, width: int) -> np.ndarray:
    import cv2

    bar = np.full((LABEL_H, width, 3), 255, np.uint8)
    scale = 0.42
    for line_i, line in enumerate(text.split("\n")[:2]):
        cv2.putText(
            bar,
            line[: width // 7],
            (4, 12 + 12 * line_i),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return bar


def _label(model: str) -> str:
    return "original" if model == ORIGINAL else model.replace("-match-", "\nmatch ")


def generated_clip(cfg: dict, ckpt: Path | str, es) -> np.ndarray:
    """``(N, 96, 96, 3)`` uint8 RGB frames of ``ckpt``'s generator on the evaluation set ``es``."""
    import torch

    from ...checkpoint import generator_from_checkpoint
    from ...translate import generate_batches

    G = generator_from_checkpoint(ckpt)
    outs = []
    with (
        torch.no_grad(),
        closing(
            generate_batches(
                G,
                es.batches(int(cfg["evaluate"]["batch_size"])),
                cfg["evaluate"]["mode"],
                int(cfg["seed"]),
                device="cpu",
            )
        ) as ys,
    ):
        for y in ys:
            outs.append(es.quantize_outputs(y))
    return torch.cat(outs).permute(0, 2, 3, 1).numpy()


def sample_video(
    cfg: dict, stage: str, base: Path | str = DEFAULT_BASE, split: str = "test", max_frames: int = MAX_FRAMES
) -> dict[str, Path]:
    """Write ``figures/samples.mp4`` and ``figures/samples_video.png`` (see the module doc)."""
    import cv2

    from ...config import deep_merge
    from ...data.media import encode_mp4
    from ...report.figures import sample_models
    from .datasets import TalkingEvalSet

    if cfg["model"]["family"] != "wav2lip":
        raise VideoError(
            f"sample videos are made for talking-face (wav2lip) experiments, not {cfg['model']['family']}"
        )
    lay = Layout.from_config(cfg, base)
    c = deep_merge(cfg, {"evaluate": {"max_images": int(max_frames)}})
    es = TalkingEvalSet.load(c, split, lay.data_root)
    clip = es.clips[0]
    n = int(clip["n_frames"])  # the first clip (its first max_frames frames)
    columns = [("real", es.targets.permute(0, 2, 3, 1).numpy()[:n])]
    for model, st in sample_models(cfg, stage):
        ckpt = lay.checkpoint(model, st)
        if not Path(ckpt).is_file():
            raise VideoError(f"missing {ckpt}: run the workflow (snakemake) to make it")
        columns.append((_label(model), generated_clip(cfg, ckpt, es)[:n]))

    def tile(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_NEAREST)

    bars = [_label_bar(label, TILE) for label, _ in columns]
    frames = np.stack(
        [
            np.concatenate(
                [np.concatenate([bars[j], tile(col[i])], axis=0) for j, (_, col) in enumerate(columns)],
                axis=1,
            )
            for i in range(n)
        ]
    )
    mp4 = encode_mp4(lay.video("samples"), frames, fps=25, wav=clip["audio"])
    rows = np.linspace(0, n - 1, min(GRID_ROWS, n)).round().astype(int)
    grid = np.concatenate([frames[0][:LABEL_H]] + [frames[i][LABEL_H:] for i in rows], axis=0)
    png = lay.figure("samples_video")
    png.parent.mkdir(parents=True, exist_ok=True)
    from ...fileio import atomic_write

    ok, buf = cv2.imencode(".png", grid[..., ::-1])
    if not ok:
        raise VideoError("could not encode the frame grid PNG")
    atomic_write(png, lambda f: f.write(buf.tobytes()))
    return {"video": Path(mp4), "grid": png, "clip": clip["name"], "frames": n, "models": len(columns) - 1}
