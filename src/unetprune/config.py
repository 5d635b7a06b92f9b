"""Load, default-fill and validate experiment configs against ``config/schema.yaml``.

Errors name the offending key as a dotted path (``train.n_epochs``), say what is wrong
and what is allowed, e.g.::

    config error at 'train.n_epoch': unknown key (allowed: n_epochs, n_epochs_decay, ...)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# The package is installed editable from the repository (`make` does), so the schema is
# read from the repository's config/ folder: one source of truth for Snakemake and the CLI.
REPO_SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range; the message names the key."""


def schema_path() -> Path:
    if not REPO_SCHEMA.is_file():
        raise ConfigError(f"config schema {REPO_SCHEMA} not found: install unetprune editable "
                          f"from its repository (`make test` does)")
    return REPO_SCHEMA


def load_schema() -> dict:
    with open(schema_path()) as f:
        return yaml.safe_load(f)


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


def _format_error(err) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        keys = [f"{path}.{k}" if path else k for k in extra]
        return (f"config error at '{', '.join(keys)}': unknown key "
                f"(allowed here: {', '.join(allowed)})")
    where = path or "<top level>"
    desc = err.schema.get("description", "")
    hint = f" - {desc.strip()}" if desc else ""
    return f"config error at '{where}': {err.message}{hint}"


def validate_config(cfg: dict) -> dict:
    """Fill defaults and validate; returns the completed config or raises ConfigError."""
    import jsonschema

    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping of keys to values, got {type(cfg).__name__}")
    schema = load_schema()
    cfg = _fill_defaults(schema, copy.deepcopy(cfg))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError("\n".join(_format_error(e) for e in errors))
    _check_semantics(cfg)
    return cfg


def _check_semantics(cfg: dict) -> None:
    d, m = cfg["data"], cfg["model"]
    if d["crop_size"] > d["load_size"]:
        raise ConfigError(f"config error at 'data.crop_size': {d['crop_size']} exceeds data.load_size={d['load_size']}")
    size = cfg["demo"]["image_size"] if d["dataset"] == "demo" else d["crop_size"]
    if d["dataset"] == "demo" and d["crop_size"] != size:
        raise ConfigError(f"config error at 'data.crop_size': the demo images are demo.image_size={size} "
                          f"pixels, so data.crop_size must be {size}")
    if size % (2 ** m["num_downs"]):
        raise ConfigError(f"config error at 'model.num_downs': images of {size}px are not divisible by "
                          f"2^{m['num_downs']}={2 ** m['num_downs']}")


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
        return validate_config(raw)
    except ConfigError as e:
        where = f" ({path})" if path else ""
        raise ConfigError(f"{e}{where}") from None


def results_dir(cfg: dict, base: Path | str = "results") -> Path:
    return Path(base) / cfg["experiment"]


def data_root(cfg: dict, base: Path | str = "results") -> Path:
    root = cfg["data"]["root"]
    return Path(root) if root else results_dir(cfg, base) / "data"


def model_spec_from_config(cfg: dict):
    from .models.unet import UNetSpec

    m = cfg["model"]
    return UNetSpec.reference(num_downs=m["num_downs"], ngf=m["ngf"], norm=m["norm"],
                              use_dropout=m["use_dropout"], bias_mode=m["bias_mode"])
