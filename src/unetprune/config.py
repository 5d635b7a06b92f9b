"""Load, default-fill and validate experiment configs: the one owner of config validation.

:func:`validate` fills the schema's defaults, checks the config against the JSON Schema
shipped inside the package (``unetprune/schema.yaml``, draft 2020-12, a description for
every key), then runs the checks a schema cannot express (sizes vs depth, layer names,
variants).  Snakemake, the CLI and the library all call it.  Errors name the offending
key as a dotted path (``train.n_epochs``; list items as ``variants[0].k``), say what is
wrong and what is allowed, e.g.::

    config error at 'train.n_epoch': unknown key (allowed here: n_epochs, n_epochs_decay, ...)

YAML is read by :func:`read_yaml` (config files and ``--set`` values): PyYAML's safe loader
with the YAML 1.2 float rule, so ``1e-3`` is a number as users expect (YAML 1.1 wants a dot,
``1.0e-3``, and would read ``1e-3`` as a string).  A config that reached us through another
YAML 1.1 loader (Snakemake's ``--configfile``) gets the same reading in :func:`validate`:
a string in YAML 1.2 float form where the schema wants a number is that number.
"""

from __future__ import annotations

import copy
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError  # noqa: F401 (re-exported: the error of every config check)


# YAML 1.2's float: digits with an optional dot and exponent (1e-3, 2E5, .5, 1.5e+3), and the
# infinities and NaN spelled as in YAML 1.1.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the float rule of YAML 1.2 (``1e-3`` is a number)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def read_yaml(text: str):
    """The YAML document ``text`` (safe: plain data only; ``1e-3`` read as a number)."""
    return yaml.load(text, Loader=_Loader)


def _numbers_from_strings(schema: dict, value):
    """``value`` with each string in YAML 1.2 float form converted to a float where ``schema``
    wants a number and not a string (a config read by a YAML 1.1 loader: ``lr: 1e-3``)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        return {k: _numbers_from_strings(props[k], v) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_numbers_from_strings(schema["items"], v) for v in value]
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if isinstance(value, str) and "number" in types and "string" not in types and _FLOAT.match(value):
        return float(value.replace("_", ""))
    return value


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


def _family_schema(name: str) -> dict | None:
    """The schema fragment of the family ``name`` (validated under ``model.<name>``), or None."""
    from .family import get_family

    path = get_family(name).schema_fragment()
    return yaml.safe_load(Path(path).read_text()) if path else None


def _moved_keys(family: str | None = None) -> dict[str, str]:
    """``{"model.<key>": "model.<family>.<key>"}`` for every key of a family's schema fragment:
    where a config written before the key moved into its family's section finds it now (the
    section of ``family``, the configured one, where its fragment has the key)."""
    from .family import family_names

    moved: dict[str, str] = {}
    names = family_names()
    for name in ([family] if family in names else []) + names:
        for key in (_family_schema(name) or {}).get("properties", {}):
            moved.setdefault(f"model.{key}", f"model.{name}.{key}")
    return moved


def _configured_family(model) -> str:
    """``model.family`` of the ``model`` section ``model`` (its schema default when unset)."""
    default = load_schema()["properties"]["model"]["properties"]["family"]["default"]
    family = model.get("family", default) if isinstance(model, dict) else default
    return family if isinstance(family, str) else default


def _format_error(err) -> str:
    path = key_path(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        keys = [key_path([*err.absolute_path, k]) for k in extra]
        moved = _moved_keys(_configured_family(err.instance)) if path == "model" else {}
        if any(k in moved for k in keys):
            old = [k for k in keys if k in moved]
            return f"config error at '{', '.join(old)}': moved to '{', '.join(moved[k] for k in old)}'"
        return f"config error at '{', '.join(keys)}': unknown key (allowed here: {', '.join(allowed)})"
    where = path or "<top level>"
    desc = err.schema.get("description", "")
    hint = f" - {desc.strip()}" if desc else ""
    return f"config error at '{where}': {err.message}{hint}"


def _without_defaults(node):
    """A schema fragment with every ``default`` (and ``required``) removed: the schema of a set of
    overrides, which names only the keys it changes."""
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k not in ("default", "required")}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def _schema_for(cfg: dict) -> dict:
    """The core schema with the configured family's fragment as ``model.<family>`` (an unknown
    family is refused with the installed ones named)."""
    from .family import family_names

    schema = load_schema()
    props = schema["properties"]
    props["finetune"]["properties"]["train"].update(
        properties=_without_defaults(props["train"]["properties"]), additionalProperties=False
    )
    model = cfg.get("model", {})  # absent = every default, the default family included
    if not isinstance(model, dict) or not isinstance(model.get("family", ""), str):
        return schema
    name = _configured_family(model)
    if name not in family_names():
        raise ConfigError(
            f"config error at 'model.family': unknown model family {name!r} "
            f"(installed: {', '.join(family_names())})"
        )
    fragment = _family_schema(name)
    if fragment is not None:
        schema["properties"]["model"]["properties"][name] = fragment
    return schema


def validate(cfg: dict) -> dict:
    """Fill defaults, check the schema (the core's and the configured family's fragment) and the
    semantics (the core's, then the family's :meth:`~unetprune.family.ModelFamily.check_config`);
    returns the completed config or raises :class:`ConfigError` naming every offending key."""
    import jsonschema

    from .family import family_for_config

    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping of keys to values, got {type(cfg).__name__}")
    schema = _schema_for(cfg)
    cfg = _fill_defaults(schema, _numbers_from_strings(schema, copy.deepcopy(cfg)))
    _check_finite(cfg, [])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        raise ConfigError("\n".join(_format_error(e) for e in errors))
    _check_semantics(cfg)
    family_for_config(cfg).check_config(cfg)
    from . import pipeline  # checks that need the architecture: layer names, levels, k

    pipeline.sensitivity_layers(cfg)
    pipeline.all_variants(cfg)
    return cfg


def _check_finite(node, path: list) -> None:
    """NaN and infinity pass every JSON-schema bound (each comparison is false): refuse them here."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(
            f"config error at '{key_path(path) or '<top level>'}': {node} is not a finite number"
        )
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
    """The checks of every family: a training target other than the generator needs the
    family ``<model.family>-<target>`` (e.g. ``wav2lip-expert``)."""
    from .family import family_names

    family, target = cfg["model"]["family"], cfg["train"]["target"]
    if target != "generator" and f"{family}-{target}" not in family_names():
        raise ConfigError(
            f"config error at 'train.target': model.family {family} has no {target} to train "
            f"(no model family {family}-{target} is installed; a {family} run trains its generator)"
        )


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
        node[parts[-1]] = read_yaml(raw)
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
            raw = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if overrides:
        raw = deep_merge(raw, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    try:
        return validate(raw)
    except ConfigError as e:
        where = f" ({path})" if path else ""
        raise ConfigError(f"{e}{where}") from None
