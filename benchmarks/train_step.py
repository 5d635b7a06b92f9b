"""Images/s of the project's trainer against a plain eager pix2pix loop, side by side.

The plain loop is the reference recipe written the obvious way (batch 1, fp32, eager,
losses read back every step with ``.item()`` as the reference's loggers do, denormal
floats left as they are).  On CPU most of the trainer's advantage is its
``train.flush_denormal`` option: denormals appear after a few Adam steps and slow x86
arithmetic several-fold.  Both train
the same architecture from the same weights on the same random batch; repetitions are
interleaved (A B A B ...) and medians reported, because this machine is noisy.

    python benchmarks/train_step.py                       # CPU, unet_256-style model at 64 px
                                                          # (+ the demo's batch 4: contiguous vs channels-last)
    python benchmarks/train_step.py --size 256 --num-downs 8 --ngf 64   # the paper's model

On a CUDA machine it also runs the trainer with its speed options (bf16 autocast,
channels-last, optionally torch.compile) at --gpu-batch.

``--graph`` compares the trainer's eager step with its whole-step CUDA graph
(``train.cuda_graph``, unetprune/cuda_graph.py) at batch 1 — fp32 and bf16, each in NCHW and
channels-last — on the same GPU in one run, interleaved, and prints ms/step and the ratio
(the bar: the graph step >= 5x the eager step for unet_256).  ``--profile N``
adds the GPU kernel time of N eager steps: a graph replays the same kernels without the launch
gaps, so that sum is the floor of the graph step.  On a CPU the graph column is the
static-buffer step run eagerly (a stand-in that checks the code path; its ratio is ~1 by
construction).  ``--only-graph`` skips the plain-loop comparison;
``--json PATH`` writes every figure.

    python benchmarks/train_step.py --size 256 --num-downs 8 --ngf 64 --graph --only-graph --json ts.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from unetprune.config import load_config
from unetprune.family import family_for_config
from unetprune.train import build_models


def plain_loop_step(G, D, opt_G, opt_D, A, B, lambda_l1=100.0):
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    fake = G(A)
    for p in D.parameters():
        p.requires_grad = True
    opt_D.zero_grad()
    pf = D(torch.cat([A, fake.detach()], 1))
    pr = D(torch.cat([A, B], 1))
    loss_D = 0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))
    loss_D.backward()
    opt_D.step()
    for p in D.parameters():
        p.requires_grad = False
    opt_G.zero_grad()
    pg = D(torch.cat([A, fake], 1))
    loss_G = bce(pg, torch.ones_like(pg)) + lambda_l1 * l1(fake, B)
    loss_G.backward()
    opt_G.step()
    return loss_G.item(), loss_D.item()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps, device, flush_denormal):
    torch.set_flush_denormal(flush_denormal)  # process-wide: set for each run explicitly
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return time.perf_counter() - t0


def graph_vs_eager(device: torch.device, args, amp: bool, channels_last: bool) -> dict:
    """ms per batch-1 step of the trainer, eager vs whole-step graph (CPU: the static-buffer
    stand-in), interleaved repetitions, medians."""
    over = {
        "model": {"pix2pix": {"num_downs": args.num_downs, "ngf": args.ngf}},
        "data": {"dataset": "folder", "crop_size": args.size, "load_size": args.size},
        "train": {
            "device": device.type,
            "amp": "bf16" if amp else "off",
            "channels_last": channels_last,
            "compile": False,
            "cuda_graph": "off",
        },
    }
    cfg_e = load_config(None, over)
    graph_on = device.type == "cuda"
    cfg_g = load_config(None, {**over, "train": {**over["train"], "cuda_graph": "on" if graph_on else "off"}})
    fam = family_for_config(cfg_e)
    eager = fam.trainer(*build_models(cfg_e)[:2], cfg_e["train"], device)
    graph = fam.trainer(*build_models(cfg_g)[:2], cfg_g["train"], device)
    if not graph_on:
        graph.use_step_graph("static")
    g = torch.Generator().manual_seed(0)
    A = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    B = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    flag = device.type == "cpu" and cfg_e["train"]["flush_denormal"]
    runs = {"eager": lambda: eager.train_step(A, B), "graph": lambda: graph.train_step(A, B)}
    for fn in runs.values():  # warm-up (the graph captures here)
        for _ in range(3):
            fn()
    times = {k: [] for k in runs}
    for _ in range(args.reps):
        for k, fn in runs.items():
            times[k].append(timed(fn, args.steps, device, flag) / args.steps * 1e3)
    e, gr = statistics.median(times["eager"]), statistics.median(times["graph"])
    row = {
        "amp": "bf16" if amp else "fp32",
        "channels_last": channels_last,
        "graph_mode": graph.step_mode.mode,
        "eager_ms": e,
        "graph_ms": gr,
        "ratio": e / gr,
        "captures": graph.step_mode.captures,
        "eager_ms_all": times["eager"],
        "graph_ms_all": times["graph"],
    }
    if args.profile and device.type == "cuda":
        try:
            row["eager_kernels"] = kernel_profile(runs["eager"], args.profile)
        except Exception as e:  # noqa: BLE001 - the timings above stand without it
            row["profile_error"] = f"{type(e).__name__}: {e}"
    return row


def kernel_profile(fn, steps: int, top: int = 15) -> dict:
    """GPU kernel time per eager step (torch.profiler, CUDA activity): the sum of every kernel's
    device time is the floor of a whole-step graph's replay, which removes launch gaps but runs
    the same kernels.  Also the ``top`` kernels by time."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    kernels = []
    for ev in prof.key_averages():
        t = getattr(ev, "self_device_time_total", None)
        if t is None:
            t = getattr(ev, "self_cuda_time_total", 0.0)
        if t and t > 0:
            kernels.append((ev.key, t / 1e3 / steps, ev.count // steps))
    kernels.sort(key=lambda k: -k[1])
    return {
        "kernel_ms_per_step": sum(k[1] for k in kernels),
        "launches_per_step": sum(k[2] for k in kernels),
        "top": [
            {"kernel": name[:120], "ms_per_step": ms, "calls_per_step": n} for name, ms, n in kernels[:top]
        ],
    }


def run_graph_section(device: torch.device, args) -> list[dict]:
    rows = []
    what = "whole-step CUDA graph" if device.type == "cuda" else "static-buffer step (CPU stand-in, no CUDA)"
    print(
        f"\n{device.type.upper()}: trainer step, eager vs {what}; batch 1, num_downs={args.num_downs} "
        f"ngf={args.ngf} size={args.size}; median of {args.reps} x {args.steps} steps"
    )
    combos = (
        [(False, False), (False, True), (True, False), (True, True)]
        if device.type == "cuda" and not args.fp32_only
        else [(False, False)]
    )
    for amp, cl in combos:
        r = graph_vs_eager(device, args, amp, cl)
        rows.append(r)
        label = f"{r['amp']}{', channels-last' if cl else ''}"
        print(
            f"  {label:<22} eager {r['eager_ms']:8.2f} ms/step   {r['graph_mode']} {r['graph_ms']:8.2f} ms/step"
            f"   x{r['ratio']:5.2f}" + ("   (>= 5x)" if r["ratio"] >= 5 else "")
        )
        if "eager_kernels" in r:
            k = r["eager_kernels"]
            print(
                f"    GPU kernel time of the eager step {k['kernel_ms_per_step']:.2f} ms "
                f"({k['launches_per_step']} kernels): the floor of a graph replay of the same kernels"
            )
            for row in k["top"][:8]:
                print(f"      {row['ms_per_step']:7.3f} ms  x{row['calls_per_step']:<4} {row['kernel'][:90]}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--num-downs", type=int, default=6)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu-batch", type=int, default=16)
    ap.add_argument(
        "--cpu-batch",
        type=int,
        default=4,
        help="CPU: also the trainer at this batch (the demo's 4), contiguous vs channels-last (0: skip)",
    )
    ap.add_argument("--compile", action="store_true", help="also torch.compile on GPU")
    ap.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the CPU, and CUDA where present",
    )
    ap.add_argument("--graph", action="store_true", help="eager vs whole-step CUDA graph, batch 1")
    ap.add_argument("--only-graph", action="store_true", help="only the --graph comparison")
    ap.add_argument("--fp32-only", action="store_true", help="--graph on CUDA: fp32 NCHW only")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="--graph on CUDA: also profile STEPS eager steps (GPU kernel time per step, top kernels)",
    )
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="CUDA: leave cudnn.benchmark off")
    ap.add_argument("--json", help="write every figure to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available() and not args.no_cudnn_benchmark:
        torch.backends.cudnn.benchmark = True  # both modes alike

    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    report = {"torch": torch.__version__, "args": vars(args), "graph": {}, "plain": {}}
    for device in devices:
        if args.graph or args.only_graph:
            report["graph"][device.type] = run_graph_section(device, args)
            if device.type == "cuda":
                report["graph"]["cuda_device"] = torch.cuda.get_device_name()
        if args.only_graph:
            continue
        over = {
            "model": {"pix2pix": {"num_downs": args.num_downs, "ngf": args.ngf}},
            "data": {"dataset": "folder", "crop_size": args.size, "load_size": args.size},
            "train": {"device": device.type, "amp": "off", "channels_last": False, "compile": False},
        }
        cfg = load_config(None, over)
        # plain eager loop, batch 1, fp32
        G0, D0, _ = build_models(cfg)
        G0, D0 = G0.to(device), D0.to(device)
        oG = torch.optim.Adam(G0.parameters(), 2e-4, betas=(0.5, 0.999))
        oD = torch.optim.Adam(D0.parameters(), 2e-4, betas=(0.5, 0.999))
        A = torch.randn(1, 3, args.size, args.size, device=device)
        B = torch.randn(1, 3, args.size, args.size, device=device)
        # the project's trainer, same recipe (batch 1, fp32) ...
        G1, D1, _ = build_models(cfg)
        t_same = family_for_config(cfg).trainer(G1, D1, cfg["train"], device)
        flush = cfg["train"]["flush_denormal"] and device.type == "cpu"
        runs = {
            "plain eager loop (b1, fp32)": (lambda: plain_loop_step(G0, D0, oG, oD, A, B), 1, False),
            f"unetprune trainer (b1, fp32{', flush denormals' if flush else ''})": (
                lambda: t_same.train_step(A, B),
                1,
                flush,
            ),
        }
        if device.type == "cpu" and args.cpu_batch:  # the demo's batch, contiguous vs channels-last
            Ac = torch.randn(args.cpu_batch, 3, args.size, args.size)
            Bc = torch.randn(args.cpu_batch, 3, args.size, args.size)
            for cl in (False, True):
                c = load_config(None, {**over, "train": {**over["train"], "channels_last": cl}})
                tr = family_for_config(c).trainer(*build_models(c)[:2], c["train"], device)
                name = (
                    f"unetprune trainer (b{args.cpu_batch}, fp32, {'channels-last' if cl else 'contiguous'})"
                )
                runs[name] = ((lambda t=tr: t.train_step(Ac, Bc)), args.cpu_batch, flush)
        if device.type == "cuda":  # ... and with its speed options
            fast = load_config(
                None,
                {
                    **over,
                    "train": {
                        "device": "cuda",
                        "amp": "bf16",
                        "channels_last": True,
                        "compile": bool(args.compile),
                    },
                },
            )
            G2, D2, _ = build_models(fast)
            t_fast = family_for_config(fast).trainer(G2, D2, fast["train"], device)
            Ab = torch.randn(args.gpu_batch, 3, args.size, args.size, device=device)
            Bb = torch.randn(args.gpu_batch, 3, args.size, args.size, device=device)
            runs[
                f"unetprune trainer (b{args.gpu_batch}, bf16, channels-last{', compile' if args.compile else ''})"
            ] = (lambda: t_fast.train_step(Ab, Bb), args.gpu_batch, False)
        for fn, _, flag in runs.values():  # warm-up (and compile)
            torch.set_flush_denormal(flag)
            for _ in range(3):
                fn()
        times = {k: [] for k in runs}
        for _ in range(args.reps):
            for name, (fn, _, flag) in runs.items():
                times[name].append(timed(fn, args.steps, device, flag))
        base = None
        print(
            f"\n{device.type.upper()} ({torch.get_num_threads()} threads)"
            if device.type == "cpu"
            else f"\nCUDA {torch.cuda.get_device_name()}"
        )
        print(
            f"model: num_downs={args.num_downs} ngf={args.ngf} size={args.size}; median of {args.reps} x {args.steps} steps"
        )
        report["plain"][device.type] = {}
        for name, (_, bs, _) in runs.items():
            ips = bs * args.steps / statistics.median(times[name])
            base = base or ips
            report["plain"][device.type][name] = ips
            print(f"  {name:<55} {ips:9.2f} img/s   x{ips / base:5.2f} vs plain loop")
        if device.type == "cpu" and args.cpu_batch:
            cl, cont = (
                f"unetprune trainer (b{args.cpu_batch}, fp32, {m})" for m in ("channels-last", "contiguous")
            )
            ratio = statistics.median(times[cont]) / statistics.median(times[cl])
            print(f"  channels-last / contiguous at b{args.cpu_batch}: x{ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
