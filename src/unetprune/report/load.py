"""The report's inputs: the JSON files of one experiment, read and checked, and the numbers of
an evaluation JSON that the tables show.

A missing input raises :class:`ReportError` naming the file and the command that makes it;
FID values of different backends (or stand-in weights, or image sizes) in one table are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import pipeline
from ..errors import UserFacingError
from ..layout import DEFAULT_BASE, FINETUNED, ORIGINAL, Layout
from .verdicts import METRICS, NOISE_SUFFIXES, QUALITY_COLUMNS, _finite, _num, is_collapsed


class ReportError(UserFacingError):
    """An input of the report is missing or inconsistent; the message says which and why."""


def _cmd_hint(cfg: dict, base, what: str, name: str | None = None, stage: str | None = None) -> str:
    lay = Layout.from_config(cfg, base)
    original = lay.checkpoint(ORIGINAL)
    if what == "eval":
        ckpt = lay.checkpoint(name, stage)
        out = lay.eval_json(name, stage)
        rule = "evaluate_original" if name == ORIGINAL else "evaluate_variant"
        return f"made by the {rule} rule: `unetprune evaluate --checkpoint {ckpt} --config <CFG> --out {out}`"
    if what == "sensitivity":
        return (
            f"made by the sensitivity_layer rule: `unetprune sweep --config <CFG> --checkpoint "
            f"{original} --layer {name}`"
        )
    if what == "prune":
        return (
            f"made by the prune_variant rule: `unetprune prune --checkpoint {original} "
            f"--out {lay.pruned_checkpoint(name)} ...`"
        )
    if what == "checkpoint":
        if name == ORIGINAL:
            return (
                f"made by the train_original rule: `unetprune train --config <CFG> --out {lay.original_dir}`"
            )
        if stage == FINETUNED:
            return (
                f"made by the finetune_variant rule: `unetprune train --config <CFG> --finetune --init-from "
                f"{lay.pruned_checkpoint(name)} --out {lay.finetuned_dir(name)}`"
            )
        return _cmd_hint(cfg, base, "prune", name)
    return ""


def read_json(path: Path, hint: str = "") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"missing {path}: {hint}" if hint else f"missing {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(
            f"{path} is not valid JSON ({e}); rerun the command that writes it"
            + (f" ({hint})" if hint else "")
        ) from e


def load_eval(cfg: dict, base, variant: str, stage: str) -> dict:
    path = Layout.from_config(cfg, base).eval_json(variant, stage)
    r = read_json(path, _cmd_hint(cfg, base, "eval", variant, stage))
    for key in ("fid", "l1", "psnr", "ssim", "complexity"):
        if key not in r:
            raise ReportError(
                f"{path} is not an evaluation result (no '{key}'); rerun "
                + _cmd_hint(cfg, base, "eval", variant, stage)
            )
    return r


def load_prune(cfg: dict, base, variant: str) -> dict:
    path = Layout.from_config(cfg, base).prune_json(variant)
    return read_json(path, _cmd_hint(cfg, base, "prune", variant))


def cpu_latency_ms(result: dict) -> float:
    """Median batch-1 CPU eager latency of an evaluation result (NaN when not measured)."""
    for e in (result.get("complexity") or {}).get("latency") or []:
        if e.get("device") == "cpu" and e.get("mode", "eager") == "eager":
            return float(e["median_ms"])
    return float("nan")


def ort_latency_ms(result: dict) -> float:
    """Median batch-1 CPU latency of an evaluation result's generator exported to ONNX and run in
    ONNX Runtime (NaN when not measured)."""
    for e in (result.get("complexity") or {}).get("latency") or []:
        if e.get("device") == "cpu" and e.get("mode") == "onnxruntime":
            return float(e["median_ms"])
    return float("nan")


def noise_setup(result: dict) -> dict | None:
    """``{"seeds": n, "bootstrap": b}`` of an evaluation's noise block, or None when it has none
    or measured nothing (one generation seed and no bootstrap)."""
    noise = result.get("noise")
    if not isinstance(noise, dict):
        return None
    seeds = noise.get("seeds") or []
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else int(seeds or 0)
    boot = int(noise.get("bootstrap") or 0)
    if n_seeds <= 1 and boot <= 0:
        return None
    return {"seeds": n_seeds, "bootstrap": boot}


def eval_noise(result: dict) -> dict[str, dict[str, float]]:
    """``{metric: {"std": s, "ci95_lo": lo, "ci95_hi": hi}}`` from an evaluation's noise block
    (the quality metrics of :data:`METRICS`; NaN where a value is missing); ``{}`` when the
    evaluation recorded no noise (:func:`noise_setup`)."""
    if noise_setup(result) is None:
        return {}
    out = {}
    for m, entry in ((result.get("noise") or {}).get("metrics") or {}).items():
        if m not in METRICS or not isinstance(entry, dict):
            continue
        std = entry.get("std")
        if not _finite(std) and (_finite(entry.get("std_seed")) or _finite(entry.get("std_boot"))):
            std = math.hypot(_num(entry.get("std_seed") or 0.0), _num(entry.get("std_boot") or 0.0))
        ci = entry.get("ci95") or [None, None]
        out[m] = {
            "std": _num(std),
            "ci95_lo": _num(ci[0] if len(ci) > 0 else None),
            "ci95_hi": _num(ci[1] if len(ci) > 1 else None),
        }
    return out


def noise_columns(noise: dict[str, dict[str, float]], metrics=QUALITY_COLUMNS) -> dict[str, float]:
    """The ``<metric>_std`` / ``<metric>_ci95_lo`` / ``<metric>_ci95_hi`` cells of :func:`eval_noise`."""
    return {f"{m}_{x}": _num((noise.get(m) or {}).get(x)) for m in metrics for x in NOISE_SUFFIXES}


def eval_numbers(result: dict, collapse_threshold: float | None = None) -> dict:
    """The numbers of one evaluation JSON that the tables show (NaN where absent).

    ``collapsed`` is recomputed from the recorded diversity ratio with ``collapse_threshold``
    when given (the config's ``evaluate.collapse_threshold``), else the flag the evaluation
    recorded; None for an evaluation without the collapse check."""
    c, seg, kid = result["complexity"], result.get("segmentation") or {}, result.get("kid") or {}
    div = result.get("diversity") or {}
    ratio = div.get("ratio")
    flag = div.get("collapsed") if collapse_threshold is None else is_collapsed(ratio, collapse_threshold)
    return {
        "params": int(c["params"]),
        "macs_physical": int(c["macs_physical"]),
        "macs_output": int(c["macs_output"]),
        "latency_ms": cpu_latency_ms(result),
        "latency_ort_ms": ort_latency_ms(result),
        "fid": _num(result["fid"]["value"]),
        "fid_backend": result["fid"].get("backend", "unknown"),
        "kid": _num(kid.get("mean")),
        "miou": _num(seg.get("miou")),
        "l1": _num(result["l1"]),
        "psnr": _num(result["psnr"]),
        "ssim": _num(result["ssim"]),
        "lse_d": _num((result.get("lse") or {}).get("lse_d")),
        "lse_c": _num((result.get("lse") or {}).get("lse_c")),
        "lse_backend": (result.get("lse") or {}).get("backend"),
        **noise_columns(eval_noise(result)),
        "diversity": _num(ratio),
        "collapsed": None if flag is None else bool(flag),
        "noise_seeds": _num((noise_setup(result) or {}).get("seeds")),
        "noise_bootstrap": _num((noise_setup(result) or {}).get("bootstrap")),
    }


def _fid_identity(fid: dict) -> tuple:
    return (fid.get("backend"), (fid.get("extractor") or {}).get("weights_sha256"), fid.get("image_size"))


def check_one_backend(results: dict[str, dict], what: str = "the main table") -> str:
    """Refuse FID values of different backends / weights / image sizes in one table."""
    ids: dict[tuple, list[str]] = {}
    for name, r in results.items():
        fid = r.get("fid") or {}
        ids.setdefault(_fid_identity(fid), []).append(name)
    if len(ids) > 1:
        parts = "; ".join(
            f"backend={b} weights={str(w)[:12]} size={s}: {', '.join(sorted(n))}"
            for (b, w, s), n in ids.items()
        )
        raise ReportError(
            f"refusing to put FID values of different backends in {what} ({parts}); "
            f"re-evaluate every model with one evaluate.fid_backend"
        )
    return next(iter(ids))[0] if ids else "unknown"


def load_all_evals(cfg: dict, base: Path | str = DEFAULT_BASE) -> dict[tuple[str, str], dict]:
    return {(v, s): load_eval(cfg, base, v, s) for v, s in pipeline.models(cfg)}
