"""Load, default-fill and validate experiment configs: the one owner of config validation.

:func:`validate` fills the schema's defaults, checks the config against the JSON Schema
shipped inside the package (``unetprune/schema.yaml``, draft 2020-12, a description for
every key), then runs the checks a schema cannot express (sizes vs depth, layer names,
variants).  Snakemake, the CLI and the library all call it.  Errors name the offending
key as a dotted path (``train.n_epochs``; list items as ``variants[0].k``), say what is
wrong and what is allowed, e.g.::

    config error at 'train.n_epoch': unknown key (allowed here: n_epochs, n_epochs_decay, ...)
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError  # noqa: F401 (re-exported: the error of every config check)



@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("unetprune").joinpath("schema.yaml").read_text()


def load_schema() -> dict:
    """The config schema shipped as package data (works for editable and normal installs)."""
    return yaml.safe_load(_schema_text())


def _fill_defaults(schema: dict, value: Any) -> Any:
    """Recursively fill ``default`` values of object properties (like Snakemake's set_default)."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill_defaults(sub, value[key])
    return value


def key_path(parts) -> str:
    """``['variants', 0, 'k']`` → ``variants[0].k``: the one spelling of a key in every error."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _format_error(err) -> str:
    path = key_path(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        keys = [key_path([*err.absolute_path, k]) for k in extra]
        return (f"config error at '{', '.join(keys)}': unknown key "
                f"(allowed here: {', '.join(allowed)})")
    where = path or "<top level>"
    desc = err.schema.get("description", "")
    hint = f" - {desc.strip()}" if desc else ""
    return f"config error at '{where}': {err.message}{hint}"


def validate(cfg: dict) -> dict:
    """Fill defaults, check the schema and the semantics; returns the completed config or
    raises :class:`ConfigError` naming every offending key."""
    import jsonschema

    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping of keys to values, got {type(cfg).__name__}")
    schema = load_schema()
    cfg = _fill_defaults(schema, copy.deepcopy(cfg))
    _check_finite(cfg, [])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError("\n".join(_format_error(e) for e in errors))
    _check_semantics(cfg)
    from . import pipeline  # checks that need the architecture: layer names, levels, k

    pipeline.sensitivity_layers(cfg)
    pipeline.all_variants(cfg)
    return cfg


def _check_finite(node, path: list) -> None:
    """NaN and infinity pass every JSON-schema bound (each comparison is false): refuse them here."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config error at '{key_path(path) or '<top level>'}': {node} is not a finite number")
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, [*path, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, [*path, i])


def write_resolved(cfg: dict, path: Path | str) -> None:
    """Write the validated config (what every job of the workflow reads), atomically."""
    from .fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=True))


def _check_semantics(cfg: dict) -> None:
    d, m = cfg["data"], cfg["model"]
    if m["family"] == "wav2lip":
        _check_wav2lip(cfg)
        return
    if cfg["train"]["target"] != "generator":
        raise ConfigError(f"config error at 'train.target': {cfg['train']['target']!r} applies to model.family "
                          f"wav2lip only (a pix2pix run trains its generator)")
    if d["dataset"] == "lrs2":
        raise ConfigError("config error at 'data.dataset': lrs2 is talking-face data for model.family wav2lip, "
                          "not an image-translation dataset")
    if cfg["report"]["quality_metric"] in ("lse_d", "lse_c"):
        raise ConfigError(f"config error at 'report.quality_metric': {cfg['report']['quality_metric']} (lip sync) "
                          f"applies to model.family wav2lip only")
    if d["crop_size"] > d["load_size"]:
        raise ConfigError(f"config error at 'data.crop_size': {d['crop_size']} exceeds data.load_size={d['load_size']}")
    size = cfg["demo"]["image_size"] if d["dataset"] == "demo" else d["crop_size"]
    if d["dataset"] == "demo" and d["crop_size"] != size:
        raise ConfigError(f"config error at 'data.crop_size': the demo images are demo.image_size={size} "
                          f"pixels, so data.crop_size must be {size}")
    if size % (2 ** m["num_downs"]):
        raise ConfigError(f"config error at 'model.num_downs': images of {size}px are not divisible by "
                          f"2^{m['num_downs']}={2 ** m['num_downs']}")


def _check_wav2lip(cfg: dict) -> None:
    """wav2lip: talking-face data (the demo or a preprocessed folder), a positive L1 weight, no
    pix2pix import."""
    d, m, t = cfg["data"], cfg["model"], cfg["train"]
    if d["dataset"] not in ("demo", "folder", "lrs2"):
        raise ConfigError(f"config error at 'data.dataset': model.family wav2lip trains on talking-face data: "
                          f"'demo' (`unetprune demo-talking`), 'lrs2' (data.source = the raw LRS2 folder) or "
                          f"'folder' (a `data preprocess-lrs2` output at data.root), not {d['dataset']!r}")
    if d["dataset"] == "lrs2" and not (d["source"] or d["root"]):
        raise ConfigError("config error at 'data.source': lrs2 is licence-gated and never downloaded: set "
                          "data.source to your LRS2 folder (<speaker>/<clip>.mp4 with train.txt, val.txt, "
                          "test.txt; the workflow preprocesses it) or data.root to an already preprocessed folder")
    if cfg["evaluate"]["lse_backend"] == "standard" and not cfg["evaluate"]["lse_weights"]:
        raise ConfigError("config error at 'evaluate.lse_weights': lse_backend standard needs the SyncNet v2 "
                          "weights (syncnet_v2.model from syncnet_python) at evaluate.lse_weights")
    if d["dataset"] == "folder" and not d["root"]:
        raise ConfigError("config error at 'data.root': data.dataset 'folder' needs data.root (a preprocessed "
                          "talking-face folder with train.txt)")
    if m["init_weights"]:
        raise ConfigError("config error at 'model.init_weights': importing released weights is pix2pix only")
    disc = t["disc_wt"] if m["hq"] else 0.0
    if t["syncnet_wt"] + disc >= 1:
        raise ConfigError(f"config error at 'train.syncnet_wt': syncnet_wt + disc_wt = {t['syncnet_wt'] + disc:g} "
                          f"leaves no weight for the L1 loss (1 - syncnet_wt - disc_wt must be positive)")


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.n_epochs=3", "data.no_flip=true"]`` → nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: Path | str | None = None, overrides: list[str] | dict | None = None) -> dict:
    """Read a YAML config (or start from the defaults), apply overrides, validate."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if overrides:
        raw = deep_merge(raw, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    try:
        return validate(raw)
    except ConfigError as e:
        where = f" ({path})" if path else ""
        raise ConfigError(f"{e}{where}") from None


def model_spec_from_config(cfg: dict):
    from .families.pix2pix.unet import UNetSpec

    m = cfg["model"]
    return UNetSpec.reference(num_downs=m["num_downs"], ngf=m["ngf"], norm=m["norm"],
                              use_dropout=m["use_dropout"], bias_mode=m["bias_mode"])
