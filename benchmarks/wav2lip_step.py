"""Wav2Lip training throughput and the data pipeline's, side by side in one run.

* **generator step** (:class:`unetprune.families.wav2lip.train.Wav2LipTrainer`: L1 + the frozen
  expert's sync loss, i.e. the step after the 0.75 switch, optionally + the HQ quality
  discriminator) in frames/s for the full 96x96 Wav2Lip (width 1) and the demo width, on CPU and
  on CUDA where present;
* **preprocessing** (``preprocess_lrs2`` on the demo's raw mp4s: ffmpeg decode, Haar face
  detection, smoothing, JPEG crops, 16 kHz audio) in frames/s;
* **loading** (:class:`~unetprune.families.wav2lip.datasets.TalkingFaceDataset` windows: JPEG decode +
  resize + the mel windows) in frames/s, with the mel front-end timed on its own (frames/s of
  the mel spectrogram of the clips' audio) to show it is not the loader's bottleneck;
* and the ratios: loading vs each generator step, mel vs loading.

    python benchmarks/wav2lip_step.py                          # builds the demo in a temp folder
    python benchmarks/wav2lip_step.py --data data/talking      # an existing `demo-talking --out` folder
    python benchmarks/wav2lip_step.py --hq --steps 3 --batch 2 --threads 2
    python benchmarks/wav2lip_step.py --threads 2 --memory-format 5 --skip-preprocess   # + channels-last

Repetitions are timed after a warm-up step and the median is reported (this machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from unetprune.family import get_family
from unetprune.families.wav2lip.syncnet import SyncNetColor, SyncNetSpec
from unetprune.families.wav2lip.train import Wav2LipCritics
from unetprune.families.wav2lip.networks import count_complexity

T = 5


def tcfg(lr=1e-4, channels_last="auto") -> dict:
    return {
        "channels_last": channels_last,
        "lr": lr,
        "beta1": 0.9,
        "beta2": 0.999,
        "flush_denormal": True,
        "syncnet_wt": 0.03,
        "sync_threshold": 0.75,
        "disc_wt": 0.07,
    }


def fake_batch(b: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "face": torch.rand(b, 6, T, 96, 96, generator=g),
        "target": torch.rand(b, 3, T, 96, 96, generator=g),
        "indiv_mels": torch.randn(b, T, 1, 80, 16, generator=g),
        "mel": torch.randn(b, 1, 80, 16, generator=g),
    }


def step_fps(
    width: float, device: torch.device, batch: int, steps: int, hq: bool, channels_last="auto"
) -> tuple[float, dict]:
    fam = get_family("wav2lip")
    torch.manual_seed(0)
    G = fam.build(fam.spec_from_config({"model": {"wav2lip": {"width_mult": width}}}))
    cx = count_complexity(G)
    expert = SyncNetColor(SyncNetSpec.reference(width))
    from unetprune.families.wav2lip.syncnet import REF_DISC_WIDTHS, Wav2LipDiscQual
    from unetprune.families.wav2lip.networks import _scaled

    qual = Wav2LipDiscQual(_scaled(REF_DISC_WIDTHS, width)) if hq else None
    D = Wav2LipCritics(expert, qual, {})
    tr = fam.trainer(G, D, tcfg(channels_last=channels_last), device)
    tr.syncnet_wt = 0.03  # the sync loss on (after the switch): the expensive step
    tr.set_train_mode()
    b = {k: v.to(device) for k, v in fake_batch(batch).items()}
    tr.step(b)
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = tr.step(b)
        float(out["loss"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch * T / statistics.median(times), cx


def memory_format_rows(width: float, batch: int, steps: int, reps: int, hq: bool) -> list[tuple[str, float]]:
    """The CPU generator step in contiguous vs channels-last memory (``train.channels_last``),
    repetitions interleaved (A B A B ...), medians."""
    fps: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for cl in (False, True):
            fps[cl].append(step_fps(width, torch.device("cpu"), batch, steps, hq, channels_last=cl)[0])
    a, b = statistics.median(fps[False]), statistics.median(fps[True])
    print(
        f"channels-last / contiguous, CPU generator step at width {width:g}, batch {batch}x{T}: {b / a:.2f}x"
    )
    return [
        (f"generator step, width {width:g}, cpu, batch {batch}x{T}, contiguous (median of {reps})", a),
        (f"generator step, width {width:g}, cpu, batch {batch}x{T}, channels-last (median of {reps})", b),
    ]


def preprocess_fps(data: Path, work: Path) -> float:
    from unetprune.families.wav2lip.datasets import list_frames
    from unetprune.families.wav2lip.lrs2 import preprocess_lrs2

    t0 = time.perf_counter()
    preprocess_lrs2(data / "raw", work / "pre", progress=False)
    dt = time.perf_counter() - t0
    pre = work / "pre"
    n = sum(list_frames(d) for d in pre.glob("*/*") if d.is_dir())
    return n / dt


def loading_fps(root: Path, n: int) -> tuple[float, float, float]:
    from unetprune import audio as A
    from unetprune.families.wav2lip.datasets import TalkingFaceDataset

    ds = TalkingFaceDataset(root, "train", mode="generator", seed=0)
    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    t0 = time.perf_counter()
    default_collate([ds[int(i)] for i in idx])  # first pass computes each clip's mel
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    default_collate([ds[int(i)] for i in idx])
    warm = time.perf_counter() - t0
    # a sample reads 2 windows (target + reference) of T frames
    t0 = time.perf_counter()
    mel_frames = 0
    for c in ds.clips:
        wav = A.read_wav(root / c / "audio.wav", 16000)
        A.melspectrogram(wav)
        mel_frames += len(wav) / 16000 * 25
    mel_fps = mel_frames / (time.perf_counter() - t0)
    return n * T / cold, n * T / warm, mel_fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", help="a `unetprune demo-talking --out` folder (default: build one in a temp folder)"
    )
    ap.add_argument("--demo-width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=4, help="windows per CPU step (T=5 frames each)")
    ap.add_argument("--gpu-batch", type=int, default=16, help="windows per CUDA step (the reference's 16)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--hq", action="store_true", help="include the quality discriminator")
    ap.add_argument("--windows", type=int, default=32, help="windows loaded for the loading measurement")
    ap.add_argument("--skip-preprocess", action="store_true")
    ap.add_argument(
        "--memory-format",
        type=int,
        default=0,
        metavar="REPS",
        help="also time the CPU step at the demo width in contiguous vs channels-last memory, REPS interleaved",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        batch = args.batch if dev.type == "cpu" else args.gpu_batch
        for width in (1.0, args.demo_width):
            fps, cx = step_fps(width, dev, batch, args.steps, args.hq)
            name = (
                f"generator step, width {width:g} ({cx['params'] / 1e6:.2f} M params, "
                f"{cx['macs_physical'] / 1e9:.2f} G MACs/frame), {dev.type}, batch {batch}x{T}"
            )
            rows.append((name, fps))
    if args.memory_format:
        rows += memory_format_rows(args.demo_width, args.batch, args.steps, args.memory_format, args.hq)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            from unetprune.families.wav2lip.demo import build_talking_demo

            data = Path(tmp) / "talking"
            build_talking_demo(data, progress=False)
        if not args.skip_preprocess:
            rows.append(
                ("preprocessing (decode + Haar + crops + audio), frames", preprocess_fps(data, Path(tmp)))
            )
        cold, load, mel = loading_fps(data / "preprocessed", args.windows)
        rows.append(("loading, first pass (each clip's mel computed once), frames", cold))
        rows.append(("loading (TalkingFaceDataset windows), frames", load))
        rows.append(("mel front-end alone, video frames' worth of audio", mel))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    load_fps = dict(rows)["loading (TalkingFaceDataset windows), frames"]
    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'frames/s':>10}  {'loading / this':>14}")
    for name, fps in rows:
        print(f"{name:<{w}}  {fps:>10.1f}  {load_fps / fps:>13.2f}x")
    print(f"mel front-end / loading: {mel / load_fps:.1f}x (above 1: the mel is not the loader's bottleneck)")


if __name__ == "__main__":
    main()
