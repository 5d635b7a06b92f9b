"""What an experiment consists of: its layers, its variants, their names and prune arguments.

The Snakemake rules, the report and the MLflow sync all ask this module (and
:mod:`unetprune.layout` for where each file lives), so they agree on names.  Everything
is a pure function of the validated config.

Variant names say what they are:

* ``inner-l5-8-r0.75`` — levels 5..8 pruned at ratio 0.75 (encoder and decoder);
* ``cut-k2`` — the 2 innermost levels removed;
* ``cut-res-l5-6`` — the residual blocks of levels 5..6 removed (families with residual
  blocks: Wav2Lip);
* ``plan-params0.5`` / ``plan-macs0.5`` / ``plan-lat20ms-cpu-t1`` / ``plan-match-cut-k2`` — the
  sensitivity-guided plan to a budget: half the parameters, half the MACs, 20 ms on one CPU
  thread, ``cut-k2``'s size (docs/plan.md);
* ``global-uniform-match-cut-k2`` / ``global-threshold-match-cut-k2`` — global baselines
  matched to ``cut-k2``'s size (the threshold on layer-normalised importance with a
  per-layer cap; ``global-threshold-raw-…`` when ``baselines.normalize`` is false).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .layout import DEFAULT_BASE, FINETUNED, ORIGINAL, PRUNED, Layout


def _fmt_ratio(r: float) -> str:
    return f"{r:g}"


def _levels_tag(levels: list[int]) -> str:
    lv = sorted(levels)
    if lv == list(range(lv[0], lv[-1] + 1)) and len(lv) > 1:
        return f"{lv[0]}-{lv[-1]}"
    return ".".join(str(x) for x in lv)


def _family_and_spec(cfg: dict):
    from .family import family_for_config

    family = family_for_config(cfg)
    return family, family.spec_from_config(cfg)


def default_inner_levels(cfg: dict) -> list[int]:
    """The configured model family's inner levels (the widest ones, e.g. 5-8 of unet_256)."""
    family, spec = _family_and_spec(cfg)
    return family.default_inner_levels(spec)


def config_layers(cfg: dict) -> list[str]:
    """All prunable layers of the configured original model, ordered outer → inner → outer
    (down1..downN, upN..up2 for the U-Net), the x-axis order of the paper's sensitivity figure."""
    family, spec = _family_and_spec(cfg)
    return family.groups(spec)


def sensitivity_layers(cfg: dict) -> list[str]:
    layers = cfg["sensitivity"]["layers"]
    allowed = config_layers(cfg)
    if layers == "all":
        return allowed
    if isinstance(layers, str):
        raise ConfigError(
            f"config error at 'sensitivity.layers': {layers!r} must be 'all' or a list of layers"
        )
    bad = [x for x in layers if x not in allowed]
    if bad:
        raise ConfigError(
            f"config error at 'sensitivity.layers': unknown layer(s) {', '.join(bad)} for "
            f"{_model_desc(cfg)} (prunable: {', '.join(allowed)})"
        )
    return [x for x in allowed if x in layers]


def _model_desc(cfg: dict) -> str:
    family, spec = _family_and_spec(cfg)
    return family.describe(spec)


def primary_variants(cfg: dict) -> dict[str, dict]:
    """name → prune arguments of the configured inner/cut variants (validated against the
    configured model family: its levels, the cuts that fit, whether it has residual blocks)."""
    family, spec = _family_and_spec(cfg)
    all_levels = family.levels(spec)
    desc = _model_desc(cfg)

    def chosen_levels(v: dict, where: str) -> list[int]:
        levels = sorted(v.get("levels") or default_inner_levels(cfg))
        bad = [lv for lv in levels if lv not in all_levels]
        if bad:
            raise ConfigError(
                f"config error at '{where}.levels': level(s) {bad} do not exist or are not "
                f"prunable in {desc} (levels {all_levels[0]}..{all_levels[-1]})"
            )
        return levels

    out: dict[str, dict] = {}
    for i, v in enumerate(cfg["variants"]):
        where = f"variants[{i}]"
        unit = v.get("unit", "levels")
        if v["strategy"] != "plan":
            extra = [k for k in ("target", "match") if k in v]
            if extra:
                raise ConfigError(f"config error at '{where}.{extra[0]}': applies to plan variants only")
        if v["strategy"] == "plan":
            name, args = _plan_variant(cfg, v, where)
        elif v["strategy"] == "inner":
            if "ratio" not in v:
                raise ConfigError(f"config error at '{where}.ratio': an inner variant needs a ratio")
            if "k" in v or "unit" in v:
                raise ConfigError(
                    f"config error at '{where}.{'k' if 'k' in v else 'unit'}': applies to cut variants only"
                )
            levels = chosen_levels(v, where)
            name = f"inner-l{_levels_tag(levels)}-r{_fmt_ratio(v['ratio'])}"
            args = {"strategy": "inner", "ratio": v["ratio"], "levels": levels}
        elif unit == "residual":
            if "k" in v or "ratio" in v:
                raise ConfigError(
                    f"config error at '{where}': a cut with unit residual takes levels, not "
                    f"{'k' if 'k' in v else 'ratio'}"
                )
            if not family.has_residual_blocks(spec):
                raise ConfigError(
                    f"config error at '{where}.unit': {desc} has no residual blocks to cut (use unit: levels)"
                )
            levels = chosen_levels(v, where)
            name = f"cut-res-l{_levels_tag(levels)}"
            args = {"strategy": "cut", "unit": "residual", "levels": levels}
        else:
            if "k" not in v:
                raise ConfigError(f"config error at '{where}.k': a cut variant needs k")
            if "ratio" in v or "levels" in v:
                raise ConfigError(
                    f"config error at '{where}': ratio/levels apply to inner and cut-res variants only"
                )
            ks = family.cut_ks(spec)
            if v["k"] not in ks:
                raise ConfigError(
                    f"config error at '{where}.k': k={v['k']} must leave at least 2 levels "
                    f"({min(ks)}..{max(ks)} for {desc})"
                    if ks
                    else f"config error at '{where}.k': {desc} cannot be cut"
                )
            if ks[v["k"]]:
                fits = [k for k, why in ks.items() if why is None]
                raise ConfigError(
                    f"config error at '{where}.k': cut k={v['k']} is refused for {desc}: "
                    f"{ks[v['k']]}; cuts that fit: {', '.join(map(str, fits)) or 'none'}"
                )
            name = f"cut-k{v['k']}"
            args = {"strategy": "cut", "k": v["k"]}
        if v.get("distill"):
            name, args = f"{name}{DISTILLED_SUFFIX}", {**args, "distill": True}
        if name in out:
            raise ConfigError(f"config error at '{where}': duplicate variant {name}")
        out[name] = args
    for i, (name, args) in enumerate(out.items()):
        ref = args.get("match")
        if ref is not None and (ref not in out or out[ref]["strategy"] == "plan"):
            others = [n for n, a in out.items() if a["strategy"] != "plan"]
            raise ConfigError(
                f"config error at 'variants[{i}].match': {ref!r} is not an inner or cut variant of this "
                f"config (one of: {', '.join(others) or 'none'})"
            )
    return out


#: the name suffix of a variant fine-tuned with distillation (variants[].distill)
DISTILLED_SUFFIX = "-kd"


def distilled_pairs(cfg: dict) -> dict[str, str]:
    """``{distilled variant: the same variant without distillation}`` for every configured pair."""
    prim = primary_variants(cfg)
    return {
        n: n[: -len(DISTILLED_SUFFIX)]
        for n, a in prim.items()
        if a.get("distill") and n[: -len(DISTILLED_SUFFIX)] in prim
    }


def finetune_cli_args(cfg: dict, name: str, base: Path | str = DEFAULT_BASE) -> list[str]:
    """Extra arguments of `unetprune train --finetune` for variant ``name``: the teacher of a
    distilled variant (``--distill-from`` the original), none otherwise."""
    if not all_variants(cfg)[name].get("distill"):
        return []
    return ["--distill-from", str(Layout.from_config(cfg, base).checkpoint(ORIGINAL))]


#: a plan's budget keys (variants[].target) -> the budget metric it targets
PLAN_TARGETS = {
    "params": "params",
    "macs": "macs_physical",
    "macs_output": "macs_output",
    "latency_ms": "latency_ms",
}


def _plan_variant(cfg: dict, v: dict, where: str) -> tuple[str, dict]:
    """The name and prune arguments of a plan variant (``{strategy: plan, target: {...}}`` or
    ``{strategy: plan, match: <variant>}``)."""
    for key in ("ratio", "k", "levels", "unit"):
        if key in v:
            raise ConfigError(
                f"config error at '{where}.{key}': a plan variant takes target or match, not {key}"
            )
    if ("target" in v) == ("match" in v):
        raise ConfigError(f"config error at '{where}': a plan variant needs exactly one of target and match")
    if "match" in v:
        return f"plan-match-{v['match']}", {"strategy": "plan", "match": v["match"]}
    t = dict(v["target"])
    budgets = [k for k in PLAN_TARGETS if k in t]
    if len(budgets) != 1:
        raise ConfigError(
            f"config error at '{where}.target': give exactly one of {', '.join(PLAN_TARGETS)} "
            f"(got {', '.join(budgets) or 'none'})"
        )
    key = budgets[0]
    if key != "latency_ms":
        extra = [k for k in ("device", "threads") if k in t]
        if extra:
            raise ConfigError(
                f"config error at '{where}.target.{extra[0]}': applies to latency_ms targets only"
            )
        tag = key.replace("_", "-")
        return f"plan-{tag}{_fmt_ratio(t[key])}", {
            "strategy": "plan",
            "budget": PLAN_TARGETS[key],
            "target": t[key],
        }
    device, threads = t.get("device", "cpu"), int(t.get("threads", 1))
    threads_tag = threads if device == "cpu" else None
    name = f"plan-lat{_fmt_ratio(t[key])}ms-{device}" + (f"-t{threads}" if device == "cpu" else "")
    return name, {
        "strategy": "plan",
        "budget": "latency_ms",
        "target": t[key],
        "device": device,
        "threads": threads_tag,
    }


def latency_tables(cfg: dict) -> list[tuple[str, int | None]]:
    """(device, threads) of every latency table the configured plan variants need."""
    out = []
    for args in primary_variants(cfg).values():
        if args.get("budget") == "latency_ms" and (args["device"], args["threads"]) not in out:
            out.append((args["device"], args["threads"]))
    return out


def plan_inputs(cfg: dict, name: str, base: Path | str = DEFAULT_BASE) -> list[Path]:
    """The files a plan variant's prune job reads besides the original: the sweep's result of
    every swept layer and, for a latency target, its latency table (none for other variants)."""
    v = all_variants(cfg)[name]
    if v["strategy"] != "plan":
        return []
    lay = Layout.from_config(cfg, base)
    files = [lay.sensitivity_json(layer) for layer in sensitivity_layers(cfg)]
    if v.get("budget") == "latency_ms":
        files.append(lay.latency_table(v["device"], v["threads"]))
    return files


def baseline_variants(cfg: dict) -> dict[str, dict]:
    """name → prune arguments of the global baselines matched to each primary variant."""
    b = cfg["baselines"]
    out = {}
    for ref, args in primary_variants(cfg).items():
        # a distilled variant is its twin's pruned model, a `match` plan has its match's budget:
        # the baselines of that budget are the twin's / the match's
        if args.get("distill") or args.get("match"):
            continue
        for strat in b["strategies"]:
            thr = strat == "global-threshold"
            tag = strat + ("-raw" if thr and not b["normalize"] else "")
            out[f"{tag}-match-{ref}"] = {
                "strategy": strat,
                "match": b["match"],
                "reference": ref,
                "normalize": b["normalize"] if thr else False,
                "max_layer_ratio": b["max_layer_ratio"] if thr else None,
                "importance": b["importance"],
            }
    return out


def all_variants(cfg: dict) -> dict[str, dict]:
    return {**primary_variants(cfg), **baseline_variants(cfg)}


def prune_cli_args(cfg: dict, name: str, base: Path | str = DEFAULT_BASE) -> list[str]:
    """Arguments of `unetprune prune` (after --checkpoint/--out) that build variant ``name``."""
    v = all_variants(cfg)[name]
    s = v["strategy"]
    if s == "inner":
        return [
            "--strategy",
            "inner",
            "--ratio",
            str(v["ratio"]),
            "--levels",
            *map(str, v["levels"]),
            "--importance",
            cfg["sensitivity"]["importance"],
        ]
    if s == "cut" and v.get("unit") == "residual":
        return ["--strategy", "cut", "--unit", "residual", "--levels", *map(str, v["levels"])]
    if s == "cut":
        return ["--strategy", "cut", "--k", str(v["k"])]
    if s == "plan":
        return _plan_cli_args(cfg, v, base)
    ref = str(Layout.from_config(cfg, base).pruned_checkpoint(v["reference"]))
    args = ["--strategy", s, "--importance", v["importance"]]
    if v["match"] == "params":
        args += ["--match-params", ref]
    else:
        args += ["--match-macs", ref, "--macs-convention", v["match"].split("_")[1]]
    if s == "global-threshold":
        args += [
            "--normalize" if v["normalize"] else "--no-normalize",
            "--max-layer-ratio",
            str(v["max_layer_ratio"]),
        ]
    return args


def _plan_cli_args(cfg: dict, v: dict, base) -> list[str]:
    from .report.verdicts import better

    lay = Layout.from_config(cfg, base)
    metric = cfg["report"]["quality_metric"]
    args = ["--strategy", "plan", "--sensitivity-dir", str(lay.sensitivity_dir)]
    args += ["--layers", *sensitivity_layers(cfg), "--verdict-metric", metric]
    if better(metric) == "higher":
        args.append("--higher-is-better")
    if "match" in v:
        ref = str(lay.pruned_checkpoint(v["match"]))
        match = cfg["baselines"]["match"]
        if match == "params":
            return args + ["--match-params", ref]
        return args + ["--match-macs", ref, "--macs-convention", match.split("_")[1]]
    if v["budget"] == "params":
        return args + ["--target-params", str(v["target"])]
    if v["budget"] == "latency_ms":
        table = str(lay.latency_table(v["device"], v["threads"]))
        return args + ["--target-latency-ms", str(v["target"]), "--latency-table", table]
    return args + ["--target-macs", str(v["target"]), "--macs-convention", v["budget"].split("_")[1]]


def variant_reference(cfg: dict, name: str) -> str | None:
    """The variant whose pruned model ``name`` is built against (a baseline's or a plan's match)."""
    v = all_variants(cfg)[name]
    return v.get("reference") or v.get("match")


def stages(cfg: dict) -> list[str]:
    """The stages every variant goes through: pruned, and finetuned when fine-tuning is on."""
    return [PRUNED, FINETUNED] if cfg["finetune"]["enabled"] else [PRUNED]


def final_stage(cfg: dict) -> str:
    return stages(cfg)[-1]


def models(cfg: dict) -> list[tuple[str, str]]:
    """(model, stage) of every evaluated model, in table order: the original, then each
    variant (inner/cut first, then the matched baselines) at each of its stages."""
    rows = [(ORIGINAL, ORIGINAL)]
    for name in all_variants(cfg):
        rows += [(name, s) for s in stages(cfg)]
    return rows


def eval_files(cfg: dict, base: Path | str = DEFAULT_BASE) -> list[Path]:
    lay = Layout.from_config(cfg, base)
    return [lay.eval_json(m, s) for m, s in models(cfg)]
