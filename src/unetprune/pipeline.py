"""What an experiment consists of: its variants, their names, files and prune arguments.

The Snakemake rules, the report and the MLflow sync all ask this module, so the three
agree on names and paths.  Everything is a pure function of the validated config.

Variant names say what they are (DESIGN.md):

* ``inner-l5-8-r0.75`` — levels 5..8 pruned at ratio 0.75 (encoder and decoder);
* ``cut-k2`` — the 2 innermost levels removed;
* ``global-uniform-match-cut-k2`` / ``global-threshold-match-cut-k2`` — global baselines
  matched to ``cut-k2``'s size (``global-threshold-norm-…`` with layer normalisation).

Results layout under ``results/<experiment>/``::

    data/                              the dataset (demo) or a pointer to it
    baseline/checkpoint.pt train.json samples.png
    sensitivity/<layer>.json           one per prunable layer, all ratios inside
    variants/<variant>/pruned.pt prune.json finetune/{checkpoint.pt,train.json,samples.png}
    eval/original.json eval/<variant>__pruned.json eval/<variant>__finetuned.json
    tables/*.csv *.md   figures/*.png   report.md   mlflow.json
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, model_spec_from_config, results_dir

PRUNED, FINETUNED = "pruned", "finetuned"


def _fmt_ratio(r: float) -> str:
    return f"{r:g}"


def _levels_tag(levels: list[int]) -> str:
    lv = sorted(levels)
    if lv == list(range(lv[0], lv[-1] + 1)) and len(lv) > 1:
        return f"{lv[0]}-{lv[-1]}"
    return ".".join(str(x) for x in lv)


def default_inner_levels(cfg: dict) -> list[int]:
    from .pruning import default_inner_levels as widest_levels

    return widest_levels(model_spec_from_config(cfg))


def prunable_layers(cfg: dict) -> list[str]:
    """All prunable layers of the configured baseline, ordered outer → inner → outer
    (down1..downN, upN..up2), the x-axis order of the paper's sensitivity figure."""
    n = cfg["model"]["num_downs"]
    return [f"down{i}" for i in range(1, n + 1)] + [f"up{i}" for i in range(n, 1, -1)]


def sensitivity_layers(cfg: dict) -> list[str]:
    layers = cfg["sensitivity"]["layers"]
    allowed = prunable_layers(cfg)
    if layers == "all":
        return allowed
    if isinstance(layers, str):
        raise ConfigError(f"config error at 'sensitivity.layers': {layers!r} must be 'all' or a list of layers")
    bad = [x for x in layers if x not in allowed]
    if bad:
        raise ConfigError(f"config error at 'sensitivity.layers': unknown layer(s) {', '.join(bad)} for "
                          f"num_downs={cfg['model']['num_downs']} (prunable: {', '.join(allowed)})")
    return [x for x in allowed if x in layers]


def primary_variants(cfg: dict) -> dict[str, dict]:
    """name → prune arguments of the configured inner/cut variants (validated)."""
    n = cfg["model"]["num_downs"]
    out: dict[str, dict] = {}
    for i, v in enumerate(cfg["variants"]):
        where = f"variants[{i}]"
        if v["strategy"] == "inner":
            if "ratio" not in v:
                raise ConfigError(f"config error at '{where}.ratio': an inner variant needs a ratio")
            if "k" in v:
                raise ConfigError(f"config error at '{where}.k': k applies to cut variants only")
            levels = sorted(v.get("levels") or default_inner_levels(cfg))
            bad = [lv for lv in levels if not 2 <= lv <= n]
            if bad:
                raise ConfigError(f"config error at '{where}.levels': level(s) {bad} do not exist or are not "
                                  f"prunable in a num_downs={n} U-Net (levels 2..{n})")
            name = f"inner-l{_levels_tag(levels)}-r{_fmt_ratio(v['ratio'])}"
            args = {"strategy": "inner", "ratio": v["ratio"], "levels": levels}
        else:
            if "k" not in v:
                raise ConfigError(f"config error at '{where}.k': a cut variant needs k")
            if "ratio" in v or "levels" in v:
                raise ConfigError(f"config error at '{where}': ratio/levels apply to inner variants only")
            if not 1 <= v["k"] <= n - 2:
                raise ConfigError(f"config error at '{where}.k': k={v['k']} must leave at least 2 levels "
                                  f"(1..{n - 2} for num_downs={n})")
            name = f"cut-k{v['k']}"
            args = {"strategy": "cut", "k": v["k"]}
        if name in out:
            raise ConfigError(f"config error at '{where}': duplicate variant {name}")
        out[name] = args
    return out


def baseline_variants(cfg: dict) -> dict[str, dict]:
    """name → prune arguments of the global baselines matched to each primary variant."""
    b = cfg["baselines"]
    out = {}
    for ref in primary_variants(cfg):
        for strat in b["strategies"]:
            tag = strat + ("-norm" if strat == "global-threshold" and b["normalize"] else "")
            out[f"{tag}-match-{ref}"] = {"strategy": strat, "match": b["match"], "reference": ref,
                                         "normalize": b["normalize"] if strat == "global-threshold" else False,
                                         "importance": b["importance"]}
    return out


def all_variants(cfg: dict) -> dict[str, dict]:
    return {**primary_variants(cfg), **baseline_variants(cfg)}


def prune_cli_args(cfg: dict, name: str, exp_dir: Path | str) -> list[str]:
    """Arguments of `unetprune prune` (after --checkpoint/--out) that build variant ``name``."""
    v = all_variants(cfg)[name]
    exp_dir = Path(exp_dir)
    s = v["strategy"]
    if s == "inner":
        return ["--strategy", "inner", "--ratio", str(v["ratio"]), "--levels", *map(str, v["levels"]),
                "--importance", cfg["sensitivity"]["importance"]]
    if s == "cut":
        return ["--strategy", "cut", "--k", str(v["k"])]
    ref = str(exp_dir / "variants" / v["reference"] / "pruned.pt")
    args = ["--strategy", s, "--importance", v["importance"]]
    if v["match"] == "params":
        args += ["--match-params", ref]
    else:
        args += ["--match-macs", ref, "--macs-convention", v["match"].split("_")[1]]
    if v["normalize"]:
        args.append("--normalize")
    return args


def variant_reference(cfg: dict, name: str) -> str | None:
    return all_variants(cfg)[name].get("reference")


def eval_name(variant: str, stage: str) -> str:
    return "original" if variant == "original" else f"{variant}__{stage}"


def stages(cfg: dict) -> list[str]:
    return [PRUNED, FINETUNED] if cfg["finetune"]["enabled"] else [PRUNED]


def eval_files(cfg: dict, base: Path | str = "results") -> list[Path]:
    d = results_dir(cfg, base) / "eval"
    files = [d / "original.json"]
    for name in all_variants(cfg):
        files += [d / f"{eval_name(name, s)}.json" for s in stages(cfg)]
    return files


def validate_experiment(cfg: dict) -> None:
    """Checks that need more than the schema (raised before any job runs)."""
    sensitivity_layers(cfg)
    all_variants(cfg)
