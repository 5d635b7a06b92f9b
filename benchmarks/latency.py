"""Side-by-side complexity and batch-1 latency of the full U-Net and its pruned variants.

    python benchmarks/latency.py                       # unet_256 at 256x256, CPU, 1 thread
    python benchmarks/latency.py --threads 2 --reps 9
    python benchmarks/latency.py --checkpoint results/demo/baseline/checkpoint.pt --size 64
    python benchmarks/latency.py --device cuda [--cuda-graph]

Variants: full, cut k=2 and k=4, inner (the widest levels, ratio 0.75), global-uniform
matched to cut-k2's parameters, global-threshold (layer-normalised) matched to the inner
model's parameters.  For each: parameters, physical and output-based MACs (conv MACs only,
see unetprune.metrics.complexity) and latency.  Latency is measured *interleaved*: every
repetition times each variant once in turn (after a warm-up of every variant), so drifts of
the machine hit all variants alike; the table reports medians over repetitions and the
speed-up of each variant's median over the full model's.  Random weights: latency does not
depend on values (no sparsity is exploited).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch


def build_variants(g, shape):
    from unetprune.pruning import prune

    cut2, _ = prune(g, "cut", k=2)
    cut4, _ = prune(g, "cut", k=4) if g.num_downs >= 6 else (None, None)
    inner, _ = prune(g, "inner", ratio=0.75)
    gu, _ = prune(g, "global-uniform", match_model=cut2, match_metric="params", input_shape=shape,
                  strict=False)
    gt, _ = prune(g, "global-threshold", normalize=True, match_model=inner, match_metric="params",
                  input_shape=shape, strict=False)
    v = [("full", g), ("cut-k2", cut2)]
    if cut4 is not None:
        v.append(("cut-k4", cut4))
    v += [("inner-r0.75", inner), ("global-uniform=cut-k2", gu), ("global-thr-norm=inner", gt)]
    return v


def time_once(model, x, device, graph=None):
    if device.type == "cuda":
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        graph.replay() if graph is not None else model(x)
        torch.cuda.synchronize()
    else:
        t0 = time.perf_counter()
        model(x)
    return (time.perf_counter() - t0) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="generator checkpoint (default: random-weight unet_256)")
    ap.add_argument("--num-downs", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="input side")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cuda-graph", action="store_true", help="CUDA: time CUDA-graph replay")
    args = ap.parse_args(argv)

    from unetprune.metrics.complexity import count_all
    from unetprune.models import get_family
    from unetprune.models.unet import UNetSpec

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from unetprune.checkpoint import generator_from_checkpoint

        g = generator_from_checkpoint(args.checkpoint)
    else:
        g = get_family("pix2pix").build(UNetSpec.reference(args.num_downs, args.ngf), seed=0)
    shape = (1, g.spec.input_nc, args.size, args.size)
    device = torch.device(args.device)
    variants = build_variants(g.eval(), shape)

    x = torch.randn(shape, device=device)
    graphs = {}
    with torch.inference_mode():
        for name, m in variants:
            m.eval().to(device)
            for _ in range(args.warmup):
                m(x)
            if args.cuda_graph and device.type == "cuda":
                gr = torch.cuda.CUDAGraph()
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        m(x)
                torch.cuda.current_stream().wait_stream(s)
                with torch.cuda.graph(gr):
                    m(x)
                graphs[name] = gr
        times = {name: [] for name, _ in variants}
        for _ in range(args.reps):
            for name, m in variants:
                times[name].append(time_once(m, x, device, graphs.get(name)))

    cpu = platform.processor() or platform.machine()
    dev = (f"CPU ({cpu}), {args.threads} thread(s)" if device.type == "cpu"
           else f"{torch.cuda.get_device_name(device)}, {'CUDA graph' if args.cuda_graph else 'eager'}")
    print(f"# U-Net num_downs={g.num_downs}, input {list(shape)}, batch 1, {dev}; torch {torch.__version__}")
    print("# MACs: conv only; physical = ConvTranspose per input pixel, output = per output pixel")
    print(f"# latency: median of {args.reps} interleaved repetitions (after {args.warmup} warm-up)")
    hdr = (f"{'variant':<24}{'params':>12}{'MACs phys (G)':>15}{'MACs out (G)':>14}"
           f"{'latency ms':>12}{'speed-up':>10}")
    print(hdr)
    print("-" * len(hdr))
    full_med = statistics.median(times["full"])
    for name, m in variants:
        c = count_all(m.to("cpu"), shape)
        med = statistics.median(times[name])
        print(f"{name:<24}{c['params']:>12,}{c['macs_physical'] / 1e9:>15.3f}{c['macs_output'] / 1e9:>14.3f}"
              f"{med:>12.1f}{full_med / med:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
