"""Side-by-side complexity and latency of the full generators and their pruned variants
(pix2pix U-Net and Wav2Lip), with each variant's speed-up over its full model.

    python benchmarks/latency.py                       # unet_256 at 256x256, CPU, 1 thread
    python benchmarks/latency.py --threads 2 --reps 9
    python benchmarks/latency.py --checkpoint results/demo/original/checkpoint.pt --size 64
    python benchmarks/latency.py --family all --width-mult 0.25          # + Wav2Lip, batch 1 and 16
    python benchmarks/latency.py --family all --device cuda --cuda-graph --json lat.json

Variants, pix2pix: full, cut k=2 and k=4, inner (the widest levels, ratio 0.75), global-uniform
matched to cut-k2's parameters, global-threshold (layer-normalised) matched to the inner
model's parameters.  Wav2Lip (``--family wav2lip|all``; face (B, 6, 96, 96) and mel
(B, 1, 80, 16) inputs, ``--width-mult`` scales every width): full, cut-k1 and cut-k2 (the
innermost levels removed), cut-res (the inner stages' residual blocks removed), inner (the
512-wide inner stages at ratio 0.75), global-uniform matched to cut-k2 and global-threshold
matched to inner (parameters).  For each: parameters, physical and output-based MACs (conv
MACs only, see unetprune.metrics.complexity) and latency at each batch size (pix2pix:
``--batches``, default 1; Wav2Lip: ``--wav2lip-batches``, default 1 and 16).

Latency is measured *interleaved*: every repetition times each variant once in turn (after a
warm-up of every variant), so drifts of the machine hit all variants alike; the table reports
medians over repetitions and the speed-up of each variant's median over the full model's.
On CUDA, ``--cuda-graph`` times both the eager call and the replay of the call captured in a
CUDA graph (static inputs), with each mode's speed-up over the full model in that mode and
graph vs eager.  On the CPU every model is also exported to ONNX (unetprune.export: eval mode,
dynamic batch) and timed in ONNX Runtime at the same thread count, interleaved with the eager
calls of the same repetition: the ``ORT ms`` column, its speed-up over the full model in ONNX
Runtime, and ``eager/ORT`` = the PyTorch eager median over the ONNX Runtime median of the same
model (``--no-onnx`` skips it).  Random weights: latency does not depend on values (no sparsity is exploited).
``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def build_variants(g, shape):
    """The pix2pix variants of the full U-Net ``g`` (MACs and budgets at ``shape``)."""
    from unetprune.pruning import prune

    cut2, _ = prune(g, "cut", k=2)
    cut4, _ = prune(g, "cut", k=4) if g.num_downs >= 6 else (None, None)
    inner, _ = prune(g, "inner", ratio=0.75)
    gu, _ = prune(
        g, "global-uniform", match_model=cut2, match_metric="params", input_shape=shape, strict=False
    )
    gt, _ = prune(
        g,
        "global-threshold",
        normalize=True,
        match_model=inner,
        match_metric="params",
        input_shape=shape,
        strict=False,
    )
    v = [("full", g), ("cut-k2", cut2)]
    if cut4 is not None:
        v.append(("cut-k4", cut4))
    v += [("inner-r0.75", inner), ("global-uniform=cut-k2", gu), ("global-thr-norm=inner", gt)]
    return v


def build_wav2lip_variants(g):
    """The Wav2Lip variants of the full generator ``g``."""
    from unetprune.family import get_family
    from unetprune.pruning import prune

    shape = get_family("wav2lip").input_shape(g)
    cut1, _ = prune(g, "cut", k=1)
    cut2, _ = prune(g, "cut", k=2)
    cut_res, _ = prune(g, "cut", k=None, unit="residual")
    inner, _ = prune(g, "inner", ratio=0.75)
    gu, _ = prune(
        g, "global-uniform", match_model=cut2, match_metric="params", input_shape=shape, strict=False
    )
    gt, _ = prune(
        g,
        "global-threshold",
        normalize=True,
        match_model=inner,
        match_metric="params",
        input_shape=shape,
        strict=False,
    )
    return [
        ("full", g),
        ("cut-k1", cut1),
        ("cut-k2", cut2),
        ("cut-res", cut_res),
        ("inner-r0.75", inner),
        ("global-uniform=cut-k2", gu),
        ("global-thr-norm=inner", gt),
    ]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(model, inputs, device, graph=None):
    """Milliseconds of one call (``graph``: one replay of the captured call)."""
    _sync(device)
    t0 = time.perf_counter()
    graph.replay() if graph is not None else model(*inputs)
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def capture(model, inputs, device):
    """The call ``model(*inputs)`` captured in a CUDA graph (warm-up on a side stream)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            model(*inputs)
    torch.cuda.current_stream(device).wait_stream(side)
    gr = torch.cuda.CUDAGraph()
    with torch.cuda.graph(gr):
        model(*inputs)
    return gr


def ort_sessions(variants, inputs, threads):
    """{variant: (ONNX Runtime CPU session, feeds)}: each model exported to ONNX (eval mode) and
    opened with ``threads`` intra-op threads; ``feeds`` = ``inputs`` by the graph's input names."""
    from unetprune.export import export_inputs, onnx_bytes, ort_session

    out = {}
    for name, m in variants:
        names = [n for n, _ in export_inputs(m, int(inputs[0].shape[-1]))]
        named = [(n, tuple(x.shape)) for n, x in zip(names, inputs)]
        sess = ort_session(onnx_bytes(m, inputs=named).model, threads)
        out[name] = (sess, {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)})
    return out


def time_ort(session, feeds):
    """Milliseconds of one ONNX Runtime call."""
    t0 = time.perf_counter()
    session.run(None, feeds)
    return (time.perf_counter() - t0) * 1e3


def measure(variants, inputs, device, reps, warmup, cuda_graph, sessions=None):
    """{variant: {"eager": [ms...], "graph": [ms...] or None, "ort": [ms...] or None}}, interleaved
    over repetitions (``sessions``: :func:`ort_sessions`, timed right after each eager call)."""
    graphs = {}
    with torch.inference_mode():
        for name, m in variants:
            m.eval().to(device)
            for _ in range(warmup):
                m(*inputs)
            if cuda_graph:
                graphs[name] = capture(m, inputs, device)
            if sessions:
                for _ in range(warmup):
                    time_ort(*sessions[name])
        times = {
            name: {"eager": [], "graph": [] if cuda_graph else None, "ort": [] if sessions else None}
            for name, _ in variants
        }
        for _ in range(reps):
            for name, m in variants:
                times[name]["eager"].append(time_once(m, inputs, device))
                if cuda_graph:
                    times[name]["graph"].append(time_once(m, inputs, device, graphs[name]))
                if sessions:
                    times[name]["ort"].append(time_ort(*sessions[name]))
    del graphs
    return times


def table(title, variants, counts, times, batch) -> list[dict]:
    """Print one table; return its rows."""
    graph = next(iter(times.values()))["graph"] is not None
    ort = next(iter(times.values()))["ort"] is not None
    med = {n: {k: (statistics.median(v) if v else None) for k, v in t.items()} for n, t in times.items()}
    full = med["full"]
    print(title)
    hdr = (
        f"{'variant':<24}{'params':>12}{'MACs phys (G)':>15}{'MACs out (G)':>14}"
        f"{'eager ms':>11}{'speed-up':>10}"
    )
    if graph:
        hdr += f"{'graph ms':>11}{'speed-up':>10}{'graph/eager':>13}"
    if ort:
        hdr += f"{'ORT ms':>11}{'speed-up':>10}{'eager/ORT':>11}"
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for name, _ in variants:
        c, m = counts[name], med[name]
        row = {
            "variant": name,
            "batch": batch,
            "params": c["params"],
            "macs_physical": c["macs_physical"],
            "macs_output": c["macs_output"],
            "eager_ms": m["eager"],
            "eager_speedup": full["eager"] / m["eager"],
            "graph_ms": m["graph"],
            "graph_speedup": (full["graph"] / m["graph"]) if graph else None,
            "graph_vs_eager": (m["eager"] / m["graph"]) if graph else None,
            "ort_ms": m["ort"],
            "ort_speedup": (full["ort"] / m["ort"]) if ort else None,
            "eager_vs_ort": (m["eager"] / m["ort"]) if ort else None,
        }
        rows.append(row)
        line = (
            f"{name:<24}{c['params']:>12,}{c['macs_physical'] / 1e9:>15.3f}{c['macs_output'] / 1e9:>14.3f}"
            f"{m['eager']:>11.2f}{row['eager_speedup']:>9.2f}x"
        )
        if graph:
            line += f"{m['graph']:>11.3f}{row['graph_speedup']:>9.2f}x{row['graph_vs_eager']:>12.2f}x"
        if ort:
            line += f"{m['ort']:>11.2f}{row['ort_speedup']:>9.2f}x{row['eager_vs_ort']:>10.2f}x"
        print(line)
    print()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=("pix2pix", "wav2lip", "all"), default="pix2pix")
    ap.add_argument("--checkpoint", help="pix2pix generator checkpoint (default: random-weight unet_256)")
    ap.add_argument("--num-downs", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="pix2pix input side")
    ap.add_argument("--batches", type=int, nargs="+", default=[1], help="pix2pix batch sizes")
    ap.add_argument(
        "--width-mult", type=float, default=1.0, help="Wav2Lip width multiplier (1 = the reference)"
    )
    ap.add_argument("--wav2lip-batches", type=int, nargs="+", default=[1, 16], help="Wav2Lip batch sizes")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cuda-graph", action="store_true", help="CUDA: also time CUDA-graph replay")
    ap.add_argument(
        "--no-onnx", action="store_true", help="CPU: skip the ONNX Runtime column (export + timing)"
    )
    ap.add_argument("--json", help="write every figure to this JSON file")
    args = ap.parse_args(argv)

    from unetprune.metrics.complexity import count_all
    from unetprune.family import get_family
    from unetprune.families.pix2pix.unet import UNetSpec

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda_graph = bool(args.cuda_graph and device.type == "cuda")
    onnx = device.type == "cpu" and not args.no_onnx
    if args.cuda_graph and not cuda_graph:
        print("# --cuda-graph: CUDA graphs need --device cuda; eager only")
    cpu = platform.processor() or platform.machine()
    dev = (
        f"CPU ({cpu}), {args.threads} thread(s)"
        if device.type == "cpu"
        else f"{torch.cuda.get_device_name(device)}, eager{' and CUDA graph' if cuda_graph else ''}"
    )
    print(f"# {dev}; torch {torch.__version__}")
    if onnx:
        import onnxruntime

        from unetprune.export import DEFAULT_OPSET

        print(
            f"# ONNX Runtime {onnxruntime.__version__} (CPU, {args.threads} intra-op thread(s), opset "
            f"{DEFAULT_OPSET}, eval mode); eager/ORT = PyTorch eager median / ONNX Runtime median"
        )
    print(
        "# MACs: conv only, per sample; physical = ConvTranspose per input pixel, output = per output pixel"
    )
    print(
        f"# latency: median of {args.reps} interleaved repetitions (after {args.warmup} warm-up); "
        f"speed-up = the full model's median / the variant's, per mode"
    )
    print()
    report = {"device": dev, "torch": torch.__version__, "reps": args.reps, "onnx": onnx, "tables": []}

    if args.family in ("pix2pix", "all"):
        if args.checkpoint:
            from unetprune.checkpoint import generator_from_checkpoint

            g = generator_from_checkpoint(args.checkpoint)
        else:
            g = get_family("pix2pix").build(UNetSpec.reference(args.num_downs, args.ngf), seed=0)
        shape = (1, g.spec.input_nc, args.size, args.size)
        variants = build_variants(g.eval(), shape)
        counts = {n: count_all(m.to("cpu"), shape) for n, m in variants}
        for b in args.batches:
            x = torch.randn((b, *shape[1:]), device=device)
            sessions = ort_sessions(variants, (x,), args.threads) if onnx else None
            times = measure(variants, (x,), device, args.reps, args.warmup, cuda_graph, sessions)
            rows = table(
                f"## pix2pix U-Net num_downs={g.num_downs}, input {[b, *shape[1:]]}, batch {b}",
                variants,
                counts,
                times,
                b,
            )
            report["tables"].append({"family": "pix2pix", "batch": b, "input": [b, *shape[1:]], "rows": rows})
            for _, m in variants:
                m.to("cpu")

    if args.family in ("wav2lip", "all"):
        from unetprune.families.wav2lip.networks import FACE_SIZE, MEL_SHAPE, Wav2LipSpec, count_complexity

        g = get_family("wav2lip").build(Wav2LipSpec.reference(args.width_mult), seed=0)
        variants = build_wav2lip_variants(g.eval())
        counts = {n: count_complexity(m.to("cpu")) for n, m in variants}
        for b in args.wav2lip_batches:
            face = torch.rand(b, g.spec.face_nc, FACE_SIZE, FACE_SIZE, device=device)
            mel = torch.randn(b, 1, *MEL_SHAPE, device=device)
            sessions = ort_sessions(variants, (face, mel), args.threads) if onnx else None
            times = measure(variants, (face, mel), device, args.reps, args.warmup, cuda_graph, sessions)
            rows = table(
                f"## Wav2Lip width {args.width_mult:g}, face {list(face.shape)} + mel {list(mel.shape)}, "
                f"batch {b}",
                variants,
                counts,
                times,
                b,
            )
            report["tables"].append(
                {"family": "wav2lip", "batch": b, "width_mult": args.width_mult, "rows": rows}
            )
            for _, m in variants:
                m.to("cpu")

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
