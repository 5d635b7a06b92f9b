"""ONNX export of a generator, and running it with ONNX Runtime on the CPU.

:func:`onnx_bytes` turns a generator of any model family into an ONNX model:

* exported with PyTorch's ONNX exporter (``torch.onnx.export(..., dynamo=True)``) at opset
  :data:`DEFAULT_OPSET` (or the one asked for), in **eval mode** (BatchNorm on its running
  statistics, dropout off): what ``evaluate.mode: eval`` scores and what a deployment runs;
* one named graph input per forward argument, in the order of ``forward``, named by the family
  (:meth:`~unetprune.family.ModelFamily.export_inputs`: ``input`` for an image-to-image U-Net,
  ``face`` and ``mel`` for Wav2Lip), one output ``output``;
* a dynamic batch axis (named ``batch``) on every input and the output; the other axes are
  fixed at the shapes the family gives for the exported size;
* metadata (``metadata_props``): ``unetprune.opset``, ``unetprune.family``, ``unetprune.spec``
  (the generator's spec as JSON), ``unetprune.inputs`` / ``unetprune.output`` (names and
  shapes, ``-1`` = the batch axis), ``unetprune.mode`` and ``unetprune.version``, plus any given
  by the caller (e.g. the checkpoint's sha256).

:func:`export_onnx` checks the model with ONNX Runtime against PyTorch on the same random inputs
(:func:`max_abs_difference`) before it writes the file atomically; :func:`ort_session` opens an
ONNX model (a path or bytes) for the CPU with a stated number of threads.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserFacingError

DEFAULT_OPSET = 18
OUTPUT_NAME = "output"
BATCH_AXIS = "batch"
MODE = "eval (BatchNorm running statistics, no dropout)"
DEFAULT_TOLERANCE = 1e-4  # max abs difference ONNX Runtime vs PyTorch that export_onnx accepts


class ExportError(UserFacingError):
    """A generator cannot be exported, or its ONNX model does not match it."""


@dataclass
class Exported:
    """An exported model: its bytes and what it takes and gives."""

    model: bytes
    opset: int
    inputs: list[tuple[str, tuple[int, ...]]]  # (name, batch-1 shape) of each graph input, in order
    output: str = OUTPUT_NAME
    metadata: dict[str, str] = field(default_factory=dict)


def export_inputs(generator: nn.Module, image_size: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, batch-1 shape)`` of every forward argument of ``generator`` at ``image_size``
    (the family's :meth:`~unetprune.family.ModelFamily.export_inputs`); a module of no registered
    family takes one ``input`` of shape (1, 3, size, size)."""
    from .family import family_of

    try:
        fam = family_of(generator)
    except TypeError:
        fam = None
    if fam is None:
        if image_size is None:
            raise ExportError(
                f"{type(generator).__name__} belongs to no model family: give the image size to export it at"
            )
        return [("input", (1, 3, int(image_size), int(image_size)))]
    return [(str(n), tuple(int(s) for s in sh)) for n, sh in fam.export_inputs(generator, image_size)]


def _spec_json(generator: nn.Module) -> str | None:
    from .family import family_of

    spec = getattr(generator, "spec", None)
    if spec is None:
        return None
    try:
        return json.dumps(family_of(generator).spec_to_dict(spec), sort_keys=True)
    except TypeError:
        return None


def onnx_bytes(
    generator: nn.Module,
    image_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    inputs: list[tuple[str, tuple[int, ...]]] | None = None,
    metadata: dict | None = None,
) -> Exported:
    """The ONNX model of ``generator`` in eval mode (see the module doc); ``generator`` itself is
    left as it was (a copy on the CPU is exported).  ``inputs``: the graph inputs' names and
    batch-1 shapes (default :func:`export_inputs` at ``image_size``)."""
    import onnx

    from . import __version__

    named = inputs if inputs is not None else export_inputs(generator, image_size)
    model = copy.deepcopy(generator).cpu().eval()
    example = tuple(torch.randn((2, *shape[1:])) for _, shape in named)
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    names = [n for n, _ in named]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                example,
                None,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_shapes=tuple({0: batch} for _ in named),
                opset_version=int(opset),
                dynamo=True,
                verbose=False,
            )
    except Exception as e:  # the exporter's own errors are many types; name the model and opset
        raise ExportError(
            f"ONNX export of {type(generator).__name__} at opset {opset} failed: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    proto = program.model_proto
    made = [int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if made != [int(opset)]:  # the exporter falls back to its own opset when it cannot convert
        raise ExportError(
            f"ONNX export of {type(generator).__name__} at opset {opset} gave opset "
            f"{made[0] if made else 'none'} (PyTorch's exporter converts down only so far): choose "
            f"--opset {made[0] if made else DEFAULT_OPSET} or newer"
        )
    with torch.no_grad():
        out_shape = tuple(model(*(torch.zeros(s) for _, s in named)).shape)
    meta = {
        "unetprune.opset": str(int(opset)),
        "unetprune.inputs": json.dumps([[n, [-1, *s[1:]]] for n, s in named]),
        "unetprune.output": json.dumps([OUTPUT_NAME, [-1, *out_shape[1:]]]),
        "unetprune.mode": MODE,
        "unetprune.version": __version__,
    }
    spec = _spec_json(generator)
    if spec is not None:
        from .family import family_of

        meta["unetprune.family"] = family_of(generator).name
        meta["unetprune.spec"] = spec
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = f"unetprune generator, opset {int(opset)}, {MODE}"
    return Exported(proto.SerializeToString(), int(opset), list(named), OUTPUT_NAME, meta)


def check_exported_from(model: bytes, generator: nn.Module, name: str) -> dict[str, str]:
    """The metadata of the ONNX ``model`` (``name``: its file, for the message) if it was exported
    from ``generator`` (the same ``unetprune.spec``); :class:`ExportError` in one line otherwise."""
    meta = read_metadata(model)
    if meta.get("unetprune.spec") != _spec_json(generator):
        raise ExportError(
            f"{name} was not exported from this generator (its unetprune.spec differs): "
            f"export the checkpoint again (`unetprune export`)"
        )
    return meta


def read_metadata(model: bytes | str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model (bytes or a file)."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    return {p.key: p.value for p in proto.metadata_props}


def ort_session(model: bytes | str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session of ``model`` (bytes or a file) with ``threads`` intra-op
    threads (None: ONNX Runtime's default) and one inter-op thread, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def random_inputs(named: list[tuple[str, tuple[int, ...]]], batch: int = 2, seed: int = 0) -> dict:
    """Seeded random float32 inputs ``{name: array}`` with batch ``batch``."""
    gen = torch.Generator().manual_seed(int(seed))
    return {n: torch.randn((batch, *s[1:]), generator=gen).numpy() for n, s in named}


def max_abs_difference(
    generator: nn.Module, model: bytes | str | Path, feeds: dict, threads: int | None = None
) -> float:
    """Max abs difference between ONNX Runtime's output of ``model`` and ``generator``'s (eval mode,
    on the CPU, on a copy) for the inputs ``feeds`` ({name: array}, in forward order)."""
    sess = ort_session(model, threads)
    got = sess.run([OUTPUT_NAME], feeds)[0]
    ref_model = copy.deepcopy(generator).cpu().eval()
    with torch.inference_mode():
        want = ref_model(*(torch.from_numpy(np.asarray(v)) for v in feeds.values())).numpy()
    if got.shape != want.shape:
        raise ExportError(f"ONNX Runtime output {got.shape} differs in shape from PyTorch's {want.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


def export_onnx(
    generator: nn.Module,
    out: Path | str,
    image_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    check_batch: int = 2,
) -> dict:
    """Export ``generator`` to ``out`` (atomically) after checking ONNX Runtime against PyTorch on
    seeded random inputs of batch ``check_batch``; raises :class:`ExportError` (nothing written)
    when the max abs difference exceeds ``tolerance``.  Returns ``{"out", "opset", "inputs",
    "output", "max_abs_diff", "check_batch", "bytes"}``."""
    from .fileio import atomic_write_bytes

    exp = onnx_bytes(generator, image_size, opset=opset, metadata=metadata)
    feeds = random_inputs(exp.inputs, check_batch)
    diff = max_abs_difference(generator, exp.model, feeds)
    if not diff <= tolerance:
        raise ExportError(
            f"the ONNX model of {type(generator).__name__} differs from PyTorch by {diff:.3g} (max abs) "
            f"> {tolerance:g} at opset {exp.opset}; not written to {out}"
        )
    atomic_write_bytes(out, exp.model)
    return {
        "out": str(out),
        "opset": exp.opset,
        "inputs": [[n, [-1, *s[1:]]] for n, s in exp.inputs],
        "output": exp.output,
        "max_abs_diff": diff,
        "check_batch": int(check_batch),
        "bytes": len(exp.model),
        "metadata": exp.metadata,
    }


def export_checkpoint(
    checkpoint: Path | str,
    out: Path | str,
    image_size: int | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """Export the generator of ``checkpoint`` to ``out`` (:func:`export_onnx`) at ``image_size``
    (default: the checkpoint config's ``data.crop_size`` where the family takes any size); refuses
    an ``out`` that is the checkpoint itself (or a link to it).  The file's metadata also records
    the checkpoint's sha256 and the family."""
    from .checkpoint import CheckpointError, generator_from_checkpoint, load_checkpoint
    from .fileio import clashing_input, sha256_file

    clash = clashing_input([out], [checkpoint])
    if clash is not None:
        raise CheckpointError(
            f"--out {clash[0]} is the checkpoint {clash[1]} (the same file, or a link to it): it would "
            f"be replaced; choose another --out"
        )
    ckpt = load_checkpoint(checkpoint)
    generator = generator_from_checkpoint(ckpt)
    if image_size is None:
        image_size = ((ckpt.get("config") or {}).get("data") or {}).get("crop_size")
    meta = {"unetprune.checkpoint_sha256": sha256_file(checkpoint)}
    info = export_onnx(
        generator,
        out,
        int(image_size) if image_size else None,
        opset=opset,
        metadata=meta,
        tolerance=tolerance,
    )
    return {**info, "checkpoint": str(checkpoint), "family": info["metadata"].get("unetprune.family")}


def exported_models(cfg: dict) -> list[tuple[str, str]]:
    """``(model, stage)`` of every model the workflow exports: the original and each variant at its
    final stage (the deployable ones; a variant's stages share the architecture)."""
    from . import pipeline

    final = pipeline.final_stage(cfg)
    return [(m, s) for m, s in pipeline.models(cfg) if m == pipeline.ORIGINAL or s == final]


def onnx_files(cfg: dict, layout) -> list[Path]:
    """The ONNX files of :func:`exported_models` in ``layout`` (a :class:`~unetprune.layout.Layout`)."""
    return [layout.onnx_model(m, s) for m, s in exported_models(cfg)]


__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "check_exported_from",
    "Exported",
    "export_checkpoint",
    "export_inputs",
    "export_onnx",
    "exported_models",
    "onnx_files",
    "max_abs_difference",
    "onnx_bytes",
    "ort_session",
    "random_inputs",
    "read_metadata",
]
