"""LSE scoring speed: syncnet_python's S lip branch in contiguous vs channels-last-3d memory.

Scores the same random 5-frame windows (224 px, BGR 0..255) with one S (seeded random weights,
eval mode) held both ways, interleaved, and prints the median seconds per window of each, the
ratio and the largest difference of the features (the same arithmetic in another order:
float rounding only).  :class:`unetprune.families.wav2lip.lse.LSEScorer` uses channels-last-3d
on the CPU.

    python benchmarks/lse_speed.py                      # 1 thread, 3 x 40 windows
    python benchmarks/lse_speed.py --threads 2 --windows 80 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20, help="windows per forward (LSEScorer's default)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from unetprune.families.wav2lip.syncnet import SyncNetS

    torch.manual_seed(0)
    contiguous = SyncNetS().eval()
    channels_last = SyncNetS().eval()
    channels_last.load_state_dict(contiguous.state_dict())
    channels_last.lip_cnn.to(memory_format=torch.channels_last_3d)
    frames = torch.rand(args.windows, 3, 5, 224, 224) * 255

    def features(net, fmt) -> torch.Tensor:
        return torch.cat(
            [
                net.forward_lip(frames[i : i + args.batch].contiguous(memory_format=fmt))
                for i in range(0, args.windows, args.batch)
            ]
        )

    layouts = {
        "contiguous": (contiguous, torch.contiguous_format),
        "channels-last-3d": (channels_last, torch.channels_last_3d),
    }
    times: dict[str, list[float]] = {k: [] for k in layouts}
    feats = {}
    with torch.inference_mode():
        features(contiguous, torch.contiguous_format)  # warm-up
        for _ in range(args.repeat):
            for name, (net, fmt) in layouts.items():
                t = time.perf_counter()
                feats[name] = features(net, fmt)
                times[name].append((time.perf_counter() - t) / args.windows)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float((feats["contiguous"] - feats["channels-last-3d"]).abs().max())
    scale = float(feats["contiguous"].abs().max())
    print(
        f"S lip branch, {args.windows} windows x {args.repeat}, batch {args.batch}, {args.threads} thread(s):"
    )
    for k, v in med.items():
        print(f"  {k:17s} {1000 * v:7.1f} ms per window")
    print(f"  channels-last-3d x{med['contiguous'] / med['channels-last-3d']:.2f} faster")
    print(f"  largest feature difference {diff:.2e} (features up to {scale:.3g})")


if __name__ == "__main__":
    main()
