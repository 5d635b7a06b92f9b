"""Model complexity: parameters, MACs (two conventions) and batch-1 latency.

MACs
----
Only the multiply-accumulates of ``Conv2d`` and ``ConvTranspose2d`` layers are counted
(BatchNorm, activations, bias additions, dropout and concatenation are *not*), as GAN
Compression, OMGD and Nota's papers do.  They are counted analytically from the shapes
each conv sees in one forward pass (forward hooks); the pass runs on ``meta`` tensors
whenever possible, so counting ``unet_256`` at 256x256 costs milliseconds.

Two conventions, both always reported and always labelled:

* ``"physical"`` — what the hardware does.  ``Conv2d``: one MAC per output pixel, output
  channel, input channel (per group) and kernel tap.  ``ConvTranspose2d`` is a scatter:
  every *input* pixel multiplies a ``k x k`` kernel into the output, so it costs
  ``H_in * W_in * C_in * C_out/groups * k*k`` (a stride-2 4x4 transposed conv is 4x
  cheaper than an output-pixel count suggests).
* ``"output"`` — every conv (transposed included) counted per *output* pixel:
  ``H_out * W_out * C_out * C_in/groups * k*k``.  This is the convention of GAN
  Compression / OMGD / Nota (thop-style counters).

For the pix2pix ``unet_256`` at 3x256x256: 6.05 G physical, 18.14 G output-based.

Latency
-------
Batch-1 forward latency in eval mode under ``torch.inference_mode``; median over
``iters`` timed runs after ``warmup`` runs.  On CPU the thread count is set for the
measurement and reported; on CUDA both eager execution and CUDA-graph replay are
offered.  On CPU the same generator exported to ONNX (:mod:`unetprune.export`, eval mode) is
also timed in ONNX Runtime (mode ``onnxruntime``) at the same thread count.  Every entry says
which device, mode, runtime, threads and batch produced it.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
import statistics
import time
from typing import Iterable

import torch
from torch import nn

MACS_SCOPE = (
    "Conv2d and ConvTranspose2d multiply-accumulates only; BatchNorm, activations, "
    "bias additions, dropout and concatenation are not counted"
)
CONVENTION_DOC = {
    "physical": "ConvTranspose2d counted per input pixel (what the hardware computes); "
    "Conv2d per output pixel",
    "output": "every conv, ConvTranspose2d included, counted per output pixel "
    "(GAN Compression / OMGD / Nota convention)",
}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded).
    The project's one parameter count."""
    return int(sum(p.numel() for p in model.parameters()))


count_params = count_parameters  # the name pruning.budget imports


def _conv_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
    k = 1
    for s in m.kernel_size:
        k *= int(s)
    cin, cout, groups = m.in_channels, m.out_channels, m.groups
    batch = int(out.shape[0])
    out_pix = 1
    for s in out.shape[2:]:
        out_pix *= int(s)
    if isinstance(m, nn.ConvTranspose2d):
        in_pix = 1
        for s in inp.shape[2:]:
            in_pix *= int(s)
        physical = batch * in_pix * cin * (cout // groups) * k
    else:
        physical = batch * out_pix * cout * (cin // groups) * k
    output_based = batch * out_pix * cout * (cin // groups) * k
    return {"physical": physical, "output": output_based}


def input_shapes(model: nn.Module, input_shape) -> list[tuple[int, ...]]:
    """Shapes of every forward argument of ``model`` for a batch whose first input has
    ``input_shape``: the model family's (e.g. a Wav2Lip generator also takes its mel windows),
    one tensor for a model of no registered family."""
    if getattr(model, "spec", None) is not None:
        from ..family import family_of

        try:
            fam = family_of(model)
        except TypeError:
            fam = None
        if fam is not None:
            return [tuple(int(x) for x in s) for s in fam.input_shapes(model, input_shape)]
    return [tuple(int(s) for s in input_shape)]


def _run_with_hooks(model: nn.Module, input_shape: Iterable[int]) -> list[tuple[str, dict[str, int]]]:
    """Run one forward pass and return ``[(module name, {"physical", "output"})]`` per conv.

    The pass first tries ``meta`` tensors (no arithmetic, no memory for activations) via
    ``torch.func.functional_call``; the model's own parameters and buffers are untouched.
    If some module cannot run on ``meta`` it falls back to a real zero-input pass on the
    model's device without gradients, restoring BN running statistics afterwards.
    """
    records: list[tuple[str, dict[str, int]]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):

            def hook(mod, args, out, _name=name):
                records.append((_name, _conv_macs(mod, args[0], out)))

            handles.append(m.register_forward_hook(hook))
    shapes = input_shapes(model, input_shape)
    was_training = model.training
    model.eval()  # MACs do not depend on the mode; a batch-1 1x1 BatchNorm refuses train mode
    try:
        try:
            tensors = {
                k: torch.empty_like(v, device="meta")
                for k, v in list(model.named_parameters()) + list(model.named_buffers())
            }
            with torch.no_grad():
                torch.func.functional_call(
                    model, tensors, tuple(torch.zeros(sh, device="meta") for sh in shapes)
                )
        except (NotImplementedError, RuntimeError):
            records.clear()
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
            state = {k: v.detach().clone() for k, v in model.named_buffers()}
            with torch.no_grad():
                model(*(torch.zeros(sh, device=device) for sh in shapes))
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(state[k])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return records


def macs_by_layer(model: nn.Module, input_shape=(1, 3, 256, 256)) -> dict[str, dict[str, int]]:
    """Per-conv MACs in both conventions, keyed by module name (``down3.conv`` ...)."""
    out: dict[str, dict[str, int]] = {}
    for name, r in _run_with_hooks(model, input_shape):
        acc = out.setdefault(name, {"physical": 0, "output": 0})
        acc["physical"] += r["physical"]
        acc["output"] += r["output"]
    return out


def count_all(model: nn.Module, input_shape=(1, 3, 256, 256)) -> dict[str, int]:
    """``{"params", "macs_physical", "macs_output"}`` from a single hooked pass."""
    recs = _run_with_hooks(model, input_shape)
    return {
        "params": count_parameters(model),
        "macs_physical": int(sum(r["physical"] for _, r in recs)),
        "macs_output": int(sum(r["output"] for _, r in recs)),
    }


@contextlib.contextmanager
def _num_threads(threads: int | None):
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _summary(times_ms: list[float]) -> dict[str, float]:
    s = sorted(times_ms)
    return {
        "median_ms": statistics.median(s),
        "mean_ms": statistics.fmean(s),
        "min_ms": s[0],
        "p90_ms": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
    }


def measure_latency(
    model: nn.Module,
    input_shape=(1, 3, 256, 256),
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    iters: int = 10,
    cuda_graph: bool = False,
) -> dict:
    """Forward latency of ``model`` (eval mode, inference_mode) on ``device``.

    Returns ``{"device", "device_name", "mode" ("eager" | "cuda_graph"), "threads" (CPU
    intra-op threads used; None on CUDA), "batch", "input_shape", "warmup", "iters",
    "median_ms", "mean_ms", "min_ms", "p90_ms"}``.  The model is moved to ``device`` for
    the measurement and moved back (and its train/eval mode restored) afterwards.
    """
    device = torch.device(device)
    if cuda_graph and device.type != "cuda":
        raise ValueError("cuda_graph=True needs a CUDA device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA latency requested but torch.cuda.is_available() is False")
    iters, warmup = max(1, int(iters)), max(0, int(warmup))
    try:
        orig_device = next(model.parameters()).device
    except StopIteration:
        orig_device = torch.device("cpu")
    was_training = model.training
    model.eval()
    model.to(device)
    xs = tuple(torch.randn(sh, device=device) for sh in input_shapes(model, input_shape))
    times: list[float] = []
    try:
        if device.type == "cpu":
            with _num_threads(threads) as used, torch.inference_mode():
                for _ in range(warmup):
                    model(*xs)
                for _ in range(iters):
                    t0 = time.perf_counter()
                    model(*xs)
                    times.append((time.perf_counter() - t0) * 1e3)
            threads_used, name = used, platform.processor() or platform.machine()
        else:
            threads_used, name = None, torch.cuda.get_device_name(device)
            with torch.inference_mode():
                if cuda_graph:
                    static_x = tuple(x.clone() for x in xs)
                    s = torch.cuda.Stream(device)
                    s.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(s):
                        for _ in range(max(3, warmup)):
                            model(*static_x)
                    torch.cuda.current_stream(device).wait_stream(s)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        model(*static_x)
                    run = graph.replay
                else:

                    def run():
                        model(*xs)

                for _ in range(warmup):
                    run()
                torch.cuda.synchronize(device)
                for _ in range(iters):
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    run()
                    end.record()
                    end.synchronize()
                    times.append(start.elapsed_time(end))
    finally:
        model.to(orig_device)
        model.train(was_training)
    return {
        "device": device.type,
        "device_name": name,
        "mode": "cuda_graph" if cuda_graph else "eager",
        "threads": threads_used,
        "batch": int(input_shape[0]),
        "input_shape": list(input_shape),
        "warmup": warmup,
        "iters": iters,
        **_summary(times),
    }


def measure_ort_latency(
    model: nn.Module,
    input_shape=(1, 3, 256, 256),
    threads: int | None = None,
    warmup: int = 3,
    iters: int = 10,
    opset: int | None = None,
    onnx_file: str | Path | None = None,
) -> dict:
    """Forward latency of ``model`` exported to ONNX (eval mode) in ONNX Runtime on the CPU.

    The inputs are the family's named forward arguments for a batch whose first input has
    ``input_shape``; ``threads`` intra-op threads (default: torch's current setting, so the
    entry is comparable with :func:`measure_latency`'s CPU entry).  ``onnx_file``: time that
    file (``unetprune export`` of this very model: its ``unetprune.spec`` must be ``model``'s,
    else :class:`~unetprune.export.ExportError`) instead of exporting ``model`` again.  Returns
    the keys of :func:`measure_latency` with ``mode`` ``"onnxruntime"``, plus ``runtime`` (ONNX
    Runtime's version), ``opset`` and ``source`` (``"exported here"`` or the file).  ``model``
    is not changed.
    """
    import onnxruntime

    from ..export import DEFAULT_OPSET, OUTPUT_NAME, check_exported_from, onnx_bytes, ort_session

    iters, warmup = max(1, int(iters)), max(0, int(warmup))
    shapes = input_shapes(model, input_shape)
    names = _input_names(model, input_shape, len(shapes))
    if onnx_file is not None:
        onnx_model = Path(onnx_file).read_bytes()
        meta = check_exported_from(onnx_model, model, str(onnx_file))
        used_opset, output, source = int(meta.get("unetprune.opset", 0)), OUTPUT_NAME, str(onnx_file)
    else:
        exported = onnx_bytes(
            model, inputs=list(zip(names, shapes)), opset=DEFAULT_OPSET if opset is None else int(opset)
        )
        onnx_model, used_opset, output, source = (
            exported.model,
            exported.opset,
            exported.output,
            "exported here",
        )
    threads_used = int(threads) if threads is not None else torch.get_num_threads()
    sess = ort_session(onnx_model, threads_used)
    gen = torch.Generator().manual_seed(0)
    feeds = {n: torch.randn(s, generator=gen).numpy() for n, s in zip(names, shapes)}
    out = [output]
    for _ in range(warmup):
        sess.run(out, feeds)
    times: list[float] = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(out, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "mode": "onnxruntime",
        "runtime": f"onnxruntime {onnxruntime.__version__}",
        "opset": used_opset,
        "source": source,
        "threads": threads_used,
        "batch": int(input_shape[0]),
        "input_shape": [int(s) for s in input_shape],
        "warmup": warmup,
        "iters": iters,
        **_summary(times),
    }


def _input_names(model: nn.Module, input_shape, n: int) -> list[str]:
    """The graph input names of ``model``'s ``n`` forward arguments: its family's, else
    ``input`` / ``input0``, ``input1``, ..."""
    from ..family import family_of

    if getattr(model, "spec", None) is not None:
        try:
            named = family_of(model).export_inputs(model, int(input_shape[-1]))
        except TypeError:
            named = None
        if named is not None and len(named) == n:
            return [str(name) for name, _ in named]
    return ["input"] if n == 1 else [f"input{i}" for i in range(n)]


def complexity_report(
    model: nn.Module,
    input_shape=(1, 3, 256, 256),
    latency: bool = True,
    threads: int | None = None,
    warmup: int = 3,
    iters: int = 10,
    onnx: bool = True,
    onnx_file: str | Path | None = None,
) -> dict:
    """Parameters, MACs in both conventions and (optionally) latency entries.

    ``latency`` entries: CPU eager at ``threads`` (default: torch's current setting) and, with
    ``onnx``, ONNX Runtime on the CPU at the same thread count (:func:`measure_ort_latency`, of
    ``onnx_file`` where given, else of a fresh export);
    when CUDA is available also CUDA eager and CUDA-graph replay.  Each entry carries its own
    ``device``/``mode``/``threads``/``batch`` labels.
    """
    shape = [int(s) for s in input_shape]
    rep = {
        **count_all(model, shape),
        "input_shape": shape,
        "mac_conventions": dict(CONVENTION_DOC),
        "macs_scope": MACS_SCOPE,
        "latency": [],
    }
    if latency:
        rep["latency"].append(
            measure_latency(model, shape, "cpu", threads=threads, warmup=warmup, iters=iters)
        )
        if onnx:
            rep["latency"].append(
                measure_ort_latency(
                    model, shape, threads=threads, warmup=warmup, iters=iters, onnx_file=onnx_file
                )
            )
        if torch.cuda.is_available():
            rep["latency"].append(measure_latency(model, shape, "cuda", warmup=warmup, iters=iters))
            rep["latency"].append(
                measure_latency(model, shape, "cuda", warmup=warmup, iters=iters, cuda_graph=True)
            )
    return rep
