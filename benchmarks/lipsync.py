"""End-to-end frames/s of ``unetprune lipsync`` for the full-width Wav2Lip and its pruned
variants, with each stage's share, in one run; and a streaming memory check.

    python benchmarks/lipsync.py                              # 10 s at 1280x720, 2 threads
    python benchmarks/lipsync.py --seconds 10 --size 1920x1080 --threads 2 --json lipsync.json
    python benchmarks/lipsync.py --memory-check --memory-minutes 10 --memory-size 1920x1080

**Speed**: a ``--seconds`` talking-face clip at ``--size`` (a real face photo, scikit-image's
astronaut portrait's head, drifting a few pixels per frame so every frame is detected anew) with
synthesised speech, lip-synced by the reference 96-px Wav2Lip at width 1 (random weights:
speed does not depend on values) and by its variants built with the family's pruning
operations (cut-k1, cut-k2, cut-res, inner at ratio 0.75, and global uniform pruning keeping
0.5 and 0.25 of every prunable layer's filters, by L1 norm), each through
:func:`unetprune.families.wav2lip.lipsync.lipsync` with ``--threads`` torch threads (the
ffmpeg decoder and encoder run beside it with ffmpeg's default threads), once with the
PyTorch generator and once (unless ``--no-onnx``) with the generator exported by
:func:`unetprune.export.export_onnx` (checked against PyTorch within 1e-4) and run by ONNX
Runtime with ``--threads`` intra-op threads.  Printed per model and backend: end-to-end
frames/s, its ratio to the full model's on the same backend and ONNX Runtime's to PyTorch's
for the same model, generator ms per frame, whether it reaches ``--target`` frames/s (real
time: 25; if not, the fraction reached), the frames/s the run would reach at most if the
generator took no time (frames over the run's wall time less the generator's: what the other
stages cap it at), and each stage's frames/s and share of the summed stage time (decode,
detect, mel, generate, paste, encode; encoding and part of decoding run in ffmpeg beside the
generator, so the summed stage time exceeds the wall time).  Every (model, backend) run is
interleaved, ``--reps`` times; medians are reported.  The load average at the start and at
the end is printed: on a shared machine the absolute rates are only valid at that load.

**Memory** (``--memory-check``): a ``--memory-minutes`` video at ``--memory-size`` made from
the still face (every frame the same picture) with as long a synthesised speech track,
lip-synced by ``unetprune lipsync`` (the cut-k2 variant at ``--memory-width-mult``) in a child
process (the face is detected in every frame: the input is a video); the peak of the
summed resident memory of that process and its ffmpeg children (sampled every 0.1 s) and
the child's own peak (``ru_maxrss``) are printed with the limit (``--memory-limit-gb``, 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STAGES = ("decode", "detect", "mel", "generate", "paste", "encode")


def speech(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Synthesised speech-like audio: voiced bursts (a 120-220 Hz glottal tone with formant-like
    harmonics) at a syllable rate of ~4 Hz, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 160 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4.1 * t + rng.uniform(0, 6)), 0, None) ** 0.6
    return (0.25 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def face_canvas(width: int, height: int) -> np.ndarray:
    """The head of the astronaut portrait (a real face photo) centred on a grey canvas of
    ``width`` x ``height``, at 80 % of its height (a talking-head framing)."""
    import cv2
    from skimage import data as skdata

    side = int(0.8 * height)
    face = cv2.resize(skdata.astronaut()[:300, 100:400], (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 120, np.uint8)
    y0, x0 = (height - side) // 2, (width - side) // 2
    canvas[y0 : y0 + side, x0 : x0 + side] = face
    return canvas


def make_clip(folder: Path, seconds: float, width: int, height: int) -> tuple[Path, Path]:
    """A moving-face mp4 and a speech WAV of ``seconds``, written into ``folder``."""
    from unetprune.data import media as M

    canvas = face_canvas(width, height)
    n = int(round(seconds * 25))
    video, wav = folder / f"face_{width}x{height}_{seconds:g}s.mp4", folder / f"speech_{seconds:g}s.wav"
    with M.Mp4Writer(video, width, height, 25) as w:
        for i0 in range(0, n, 25):
            w.write(np.stack([np.roll(canvas, (i % 7) - 3, axis=1) for i in range(i0, min(n, i0 + 25))]))
    M.write_wav(wav, speech(seconds), 16000)
    return video, wav


def still_video(folder: Path, minutes: float, width: int, height: int) -> tuple[Path, Path]:
    """A ``minutes``-long mp4 of the still face at ``width`` x ``height`` and as long a speech
    WAV: 10 s of the picture encoded once, then copied end to end (ffmpeg's concat demuxer,
    no re-encoding)."""
    from unetprune.data import media as M

    piece, video = folder / "still_10s.mp4", folder / f"still_{width}x{height}_{minutes:g}min.mp4"
    wav = folder / f"speech_{minutes:g}min.wav"
    frame = face_canvas(width, height)[None]
    with M.Mp4Writer(piece, width, height, 25) as w:
        for _ in range(10):
            w.write(np.repeat(frame, 25, axis=0))
    pieces = max(1, round(6 * minutes))
    listing = folder / "pieces.txt"
    listing.write_text("".join(f"file '{piece}'\n" for _ in range(pieces)))
    cmd = [M.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "concat"]
    cmd += ["-safe", "0", "-i", str(listing), "-c", "copy", str(video)]
    subprocess.run(cmd, check=True)
    M.write_wav(wav, speech(10 * pieces, seed=1), 16000)
    return video, wav


def variants(folder: Path, width_mult: float = 1.0, names=None) -> list[dict]:
    """Checkpoints of the reference Wav2Lip at ``width_mult`` (1: full width; seeded random
    weights) and its variants made by the family's pruning operations (only ``names`` when
    given), each ``{"name", "path", "params", "model"}``; ``uniform-keepX`` keeps the fraction
    ``X`` of every prunable layer's filters (global uniform pruning at ratio ``1 - X``)."""
    from unetprune.checkpoint import save_generator
    from unetprune.family import get_family
    from unetprune.families.wav2lip.networks import Wav2LipSpec
    from unetprune.pruning import prune

    g = get_family("wav2lip").build(Wav2LipSpec.reference(width_mult), seed=0).eval()
    makers = {
        "full": lambda: g,
        "cut-k1": lambda: prune(g, "cut", k=1)[0],
        "cut-k2": lambda: prune(g, "cut", k=2)[0],
        "cut-res": lambda: prune(g, "cut", k=None, unit="residual")[0],
        "inner-r0.75": lambda: prune(g, "inner", ratio=0.75)[0],
        "uniform-keep0.5": lambda: prune(g, "global-uniform", ratio=0.5)[0],
        "uniform-keep0.25": lambda: prune(g, "global-uniform", ratio=0.75)[0],
    }
    out = []
    for name, make in makers.items():
        if names is not None and name not in names:
            continue
        m = make().eval()
        path = folder / f"{name}_w{width_mult:g}.pt"
        save_generator(path, m)
        out.append({"name": name, "path": path, "params": sum(p.numel() for p in m.parameters()), "model": m})
    return out


def export_variants(models: list[dict], folder: Path) -> None:
    """Export each model of :func:`variants` to ONNX (checked against PyTorch within 1e-4 by
    :func:`unetprune.export.export_onnx`); adds ``"onnx"`` (path) and ``"onnx_max_abs_diff"``."""
    from unetprune.export import export_onnx

    for m in models:
        path = folder / f"{m['path'].stem}.onnx"
        info = export_onnx(m["model"], path)
        m["onnx"], m["onnx_max_abs_diff"] = path, info["max_abs_diff"]


def speed(args, folder: Path) -> dict:
    import torch

    from unetprune.families.wav2lip.lipsync import lipsync

    torch.set_num_threads(args.threads)
    w, h = map(int, args.size.split("x"))
    video, wav = make_clip(folder, args.seconds, w, h)
    models = variants(folder, names=args.models.split(",") if args.models else None)
    backends = ["torch"] if args.no_onnx else ["torch", "onnxruntime"]
    if not args.no_onnx:
        export_variants(models, folder)
    runs: dict[tuple[str, str], list[dict]] = {(m["name"], b): [] for m in models for b in backends}
    for rep in range(args.reps):
        for m in models:
            for b in backends:
                s = lipsync(
                    m["path"],
                    video,
                    wav,
                    folder / f"out_{m['name']}_{b}.mp4",
                    device="cpu",
                    batch_size=args.batch_size,
                    paste="lower",
                    onnx=m["onnx"] if b == "onnxruntime" else None,
                )
                runs[m["name"], b].append(s)
                print(
                    f"  rep {rep + 1}/{args.reps} {m['name']} {b}: {s['frames_per_second']:.1f} frames/s "
                    f"(load {os.getloadavg()[0]:.1f})",
                    file=sys.stderr,
                )
    info = {m["name"]: m for m in models}
    rows = []
    for (name, backend), rs in runs.items():
        frames = rs[0]["frames"]
        stages = {
            st: {
                "fps": statistics.median(r["stages"][st]["fps"] or 0.0 for r in rs),
                "share": statistics.median(r["stages"][st]["share"] for r in rs),
                "seconds": statistics.median(r["stages"][st]["seconds"] for r in rs),
            }
            for st in STAGES
        }
        # what the run would reach if the generator took no time: frames over the rest of the run
        rest = statistics.median(r["seconds"] - r["stages"]["generate"]["seconds"] for r in rs)
        rows.append(
            {
                "model": name,
                "backend": backend,
                "params": info[name]["params"],
                "onnx_max_abs_diff": info[name].get("onnx_max_abs_diff"),
                "fps": statistics.median(r["frames_per_second"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
                "frames": frames,
                "generator_ms_per_frame": 1000 * stages["generate"]["seconds"] / frames,
                "fps_without_generator": frames / rest if rest > 0 else None,
                "stages": stages,
            }
        )
    return {"video": f"{w}x{h}", "seconds": args.seconds, "backends": backends, "rows": rows}


def print_speed(res: dict, args) -> None:
    full = {r["backend"]: r["fps"] for r in res["rows"] if r["model"] == "full"}
    torch_fps = {r["model"]: r["fps"] for r in res["rows"] if r["backend"] == "torch"}
    print(
        f"## lipsync end to end: {res['seconds']:g} s clip at {res['video']}, full-width Wav2Lip (random "
        f"weights), {args.threads} CPU threads, batch {args.batch_size}, median of {args.reps}"
    )
    head = (
        f"| model | params | generator | frames/s | vs full | vs torch | generator ms/frame | "
        f">= {args.target:g} fps | frames/s if generator free |"
    )
    head += "".join(f" {s} fps (share) |" for s in STAGES)
    print(head)
    print("|" + "---|" * (9 + len(STAGES)))
    for r in res["rows"]:
        ok = "yes" if r["fps"] >= args.target else f"no ({r['fps'] / args.target:.0%})"
        vs_full = f"{r['fps'] / full[r['backend']]:.2f}x" if r["backend"] in full else "-"
        vs_torch = f"{r['fps'] / torch_fps[r['model']]:.2f}x" if r["model"] in torch_fps else "-"
        cap = f"{r['fps_without_generator']:.1f}" if r["fps_without_generator"] else "-"
        cells = "".join(
            f" {r['stages'][s]['fps']:.0f} ({100 * r['stages'][s]['share']:.0f} %) |" for s in STAGES
        )
        print(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['backend']} | {r['fps']:.2f} | {vs_full} | "
            f"{vs_torch} | {r['generator_ms_per_frame']:.0f} | {ok} | {cap} |{cells}"
        )
    diffs = [r["onnx_max_abs_diff"] for r in res["rows"] if r["onnx_max_abs_diff"] is not None]
    if diffs:
        print(
            f"(ONNX Runtime vs PyTorch on random inputs: max abs difference <= {max(diffs):.2g} for every model)"
        )
    best = max(res["rows"], key=lambda r: r["fps"])
    if best["fps"] >= args.target:
        reach = [f"{r['model']} ({r['backend']})" for r in res["rows"] if r["fps"] >= args.target]
        print(f"reaches {args.target:g} frames/s: {', '.join(reach)}")
    else:
        top = max(STAGES, key=lambda s: best["stages"][s]["share"])
        print(
            f"no model reaches {args.target:g} frames/s; the fastest, {best['model']} ({best['backend']}), "
            f"is at {best['fps']:.2f} ({best['fps'] / args.target:.0%}), its largest stage is {top} "
            f"({100 * best['stages'][top]['share']:.0f} %), and with a generator that took no time this "
            f"run would reach at most {best['fps_without_generator'] or 0:.1f} frames/s"
        )


def _tree_rss_mb(pid: int) -> float:
    """Summed resident memory (MB) of ``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            pass
        todo += children.get(p, [])
    return total


# the child's own peak, measured in a process started from this small one (see tests/test_hostile.py)
_MEASURE = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
print(p.pid, file=open(sys.argv[1] + ".pid", "w"), flush=True)
_, status, usage = os.wait4(p.pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss / 1024:.1f}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def memory(args, folder: Path) -> dict:
    w, h = map(int, args.memory_size.split("x"))
    t0 = time.perf_counter()
    video, wav = still_video(folder, args.memory_minutes, w, h)
    made = time.perf_counter() - t0
    ckpt = variants(folder, args.memory_width_mult, names=["cut-k2"])[0]["path"]
    peak_file = folder / "peak.txt"
    argv = ["lipsync", "--checkpoint", str(ckpt), "--face", str(video), "--audio", str(wav)]
    argv += [
        "--out",
        str(folder / "long.mp4"),
        "--no-progress",
        "--device",
        "cpu",
        "--stats",
        "--paste",
        "lower",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-c", _MEASURE, str(peak_file), sys.executable, "-m", "unetprune.cli", *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_tree, stop = [0.0], threading.Event()

    def sample():
        pid_file = Path(str(peak_file) + ".pid")
        while not stop.is_set():
            if pid_file.exists() and pid_file.read_text().strip():
                peak_tree[0] = max(peak_tree[0], _tree_rss_mb(int(pid_file.read_text())))
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"lipsync failed ({proc.returncode}): {err[-2000:]}")
    s = json.loads(out.strip().splitlines()[-1])
    return {
        "video": f"{w}x{h}",
        "minutes": args.memory_minutes,
        "frames": s["frames"],
        "seconds": round(took, 1),
        "fps": round(s["frames"] / took, 2),
        "made_in_s": round(made, 1),
        "peak_tree_mb": round(peak_tree[0], 1),
        "peak_process_mb": float(peak_file.read_text()),
        "limit_mb": args.memory_limit_gb * 1024,
        "stats": "\n".join(ln for ln in err.splitlines() if not ln.startswith("wrote")),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length of the speed run")
    ap.add_argument("--size", default="1280x720", help="video size of the speed run, WxH")
    ap.add_argument("--threads", type=int, default=2, help="torch (and ffmpeg) threads")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--target", type=float, default=25.0, help="real-time frames/s")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed run")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime runs")
    ap.add_argument(
        "--models",
        help="comma-separated subset of full,cut-k1,cut-k2,cut-res,inner-r0.75,uniform-keep0.5,"
        "uniform-keep0.25 (default: all)",
    )
    ap.add_argument("--memory-check", action="store_true", help="also run the streaming memory check")
    ap.add_argument("--memory-minutes", type=float, default=10.0)
    ap.add_argument("--memory-size", default="1920x1080")
    ap.add_argument("--memory-limit-gb", type=float, default=2.0)
    ap.add_argument(
        "--memory-width-mult",
        type=float,
        default=0.25,
        help="Wav2Lip width of the memory check (its weights are a few MB at any width; 0.25 keeps "
        "the generation of 15000 frames within minutes on 2 CPU threads)",
    )
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, {args.threads} threads, "
        f"nice {os.nice(0)}; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    result: dict = {"threads": args.threads, "cpus": os.cpu_count(), "nice": os.nice(0), "load_start": load0}
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as td:
        folder = Path(td)
        if not args.no_speed:
            result["speed"] = speed(args, folder)
            print_speed(result["speed"], args)
        if args.memory_check:
            m = memory(args, folder)
            result["memory"] = m
            verdict = "under" if m["peak_tree_mb"] < m["limit_mb"] else "OVER"
            print(
                f"## streaming memory: {m['minutes']:g} min at {m['video']} ({m['frames']} frames, still face, "
                f"cut-k2 of width {args.memory_width_mult:g}) lip-synced in {m['seconds']:.0f} s ({m['fps']:.1f} frames/s); peak resident memory "
                f"{m['peak_tree_mb']:.0f} MB (lipsync + its ffmpeg processes, summed; the lipsync process "
                f"alone {m['peak_process_mb']:.0f} MB), {verdict} the {m['limit_mb']:.0f} MB limit"
            )
            print(m["stats"])
    load1 = os.getloadavg()
    result["load_end"] = load1
    print(f"# load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        from unetprune.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
