# Shared helpers: config validation (before any job runs), paths, per-rule parameters.
# Every path comes from the package's results layout (unetprune.layout); every rule
# carries the digest of the code its command runs, so editing a module reruns exactly
# the jobs that import it (unetprune.provenance).
import importlib.util
import json
import os
import shlex

from unetprune.config import validate
from unetprune.family import family_for_config
from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED, Layout
from unetprune.provenance import code_digest, code_modules, family_modules

# Validate (schema + semantic checks, errors name the key) before the DAG is built.
# Nothing is written while the Snakefile is parsed: the resolved config is a rule output.
_validated = validate(dict(config))
config.clear()
config.update(_validated)

LAYOUT = Layout.from_config(config)


def _cli_config_args():
    """`--config FILE --set key=value ...`: the same config file and `--config` overrides
    that Snakemake was given, for every job's `unetprune` command (which validates them the
    same way).  Not a `params` value: a job reruns only when the config sections it uses
    (its `cfg` param) or its code change."""
    files = [str(f) for f in workflow.configfiles]
    if len(files) != 1:
        raise ValueError(f"give one --configfile (got {len(files)}: {', '.join(files)}); use --config "
                         f"key=value for overrides")
    args = ["--config", files[0]]

    def leaves(key, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                yield from leaves(f"{key}.{k}", v)
        else:
            yield key, value

    for top, value in workflow.config_settings.config.items():
        for key, leaf in leaves(str(top), value):
            args += ["--set", f"{key}={json.dumps(leaf)}"]
    return args


CONFIG_ARGS = _cli_config_args()


def config_args(wildcards, input):
    """The `config` param of every job: CONFIG_ARGS.  A function of the job's input, so
    Snakemake counts it as derived and it is not a rerun trigger (the `cfg` param is)."""
    return CONFIG_ARGS
CFG = str(LAYOUT.config_file)  # the resolved config, a record written by a job (config.smk)
GPU = config["workflow"]["gpus_per_job"]
TRAIN_THREADS = config["workflow"]["train_threads"]
FINETUNE_THREADS = config["workflow"]["finetune_threads"] or TRAIN_THREADS
EVAL_THREADS = config["workflow"]["eval_threads"]
# the conda environment of every job, a path that also holds in a family's rule files
CONDA_ENV = os.path.join(os.path.dirname(os.path.abspath(workflow.main_snakefile)), "workflow", "envs",
                         "unetprune.yaml")


def sections(*keys):
    """JSON of the config sections a job depends on, as a `params` value (a change reruns the job)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


FAMILY = family_for_config(config)   # the model family: its extra jobs, inputs and outputs (family.py)


def _command_module(command):
    """The module of `unetprune <command>`: the core's, this model family's, or another installed
    family's (e.g. `import`, which dispatches to the family named by --family)."""
    from unetprune.cli import command_modules

    mods = [f"unetprune.commands.{command}", *FAMILY.command_modules(), *command_modules()]
    for module in mods:
        if module.rsplit(".", 1)[-1] == command and importlib.util.find_spec(module) is not None:
            return module
    raise ValueError(f"model family {FAMILY.name} has no `unetprune {command}` command (model.family)")


def code(command):
    """Digest of the code `unetprune <command>` runs, the model family's included (a change
    reruns the job): the family's pruning operations count only for commands that prune."""
    entry = _command_module(command)
    ops = FAMILY.pruning_ops()
    prunes = "unetprune.pruning.ops" in code_modules(entry)
    exclude = () if prunes or ops is None else (type(ops).__module__,)
    return code_digest(entry, extra=family_modules(type(FAMILY).__module__, exclude))


def code_of(module):
    """Digest of the package code a `run:` block imports from ``module``."""
    return code_digest(module)


def log(job):
    return str(LAYOUT.log(job))


def get_data_marker():
    """The file that proves the dataset is in place (input of training/evaluation), as the model
    family says: the demo's manifest, the marker of `verify_data` (data.smk) for fetched or
    prepared datasets, nothing for a ready folder."""
    marker = FAMILY.data_marker(LAYOUT, config)
    return str(marker) if marker is not None else []


def family_inputs(job):
    """The model family's extra named inputs of the core job ``job`` (train, finetune, evaluate,
    sweep), e.g. Wav2Lip's lip-sync expert or its LSE network."""
    return {name: str(path) for name, (path, _key) in FAMILY.job_inputs(job, LAYOUT, config).items()}


def family_args(job):
    """The `params` function giving `--set <key>=<input>` for each of the family's extra inputs of
    ``job`` that its command reads through a config key (derived: no rerun trigger)."""
    keys = {name: key for name, (_path, key) in FAMILY.job_inputs(job, LAYOUT, config).items() if key}

    def args(wildcards, input):
        out = []
        for name, key in keys.items():
            out += ["--set", f"{key}={getattr(input, name)}"]
        return out

    return args


def get_variants():
    return list(pipeline.all_variants(config))


def get_layers():
    return pipeline.sensitivity_layers(config)


def get_eval_files():
    return [str(p) for p in pipeline.eval_files(config)]


def get_prune_inputs(wildcards):
    ref = pipeline.variant_reference(config, wildcards.variant)
    ins = {"ckpt": str(LAYOUT.checkpoint(ORIGINAL))}
    if ref:
        ins["ref"] = str(LAYOUT.pruned_checkpoint(ref))
    plan = pipeline.plan_inputs(config, wildcards.variant)  # a plan reads the sweep (and latency table)
    if plan:
        ins["plan"] = [str(p) for p in plan]
    return ins


def get_eval_checkpoint(wildcards):
    return str(LAYOUT.checkpoint(wildcards.variant, wildcards.stage))


def get_eval_onnx(wildcards):
    """The ONNX file export.smk writes of the evaluated model, if it writes one: the evaluation
    times it in ONNX Runtime instead of exporting the generator again."""
    from unetprune.export import exported_models

    key = (wildcards.variant, wildcards.stage) if "variant" in wildcards.keys() else (ORIGINAL, ORIGINAL)
    return {"onnx": str(LAYOUT.onnx_model(*key))} if key in exported_models(config) else {}


def eval_ort_args(wildcards, input):
    """``--onnx FILE`` where the evaluated model is exported; ``--no-ort`` for the other stages
    (the report takes a variant's ONNX Runtime latency from its exported stage)."""
    return f"--onnx {shlex.quote(input.onnx)}" if "onnx" in input.keys() else "--no-ort"


def get_report_outputs():
    return [str(p) for p in LAYOUT.report_outputs()]


def get_onnx_outputs():
    """The ONNX files of export.smk: the original and every variant at the final stage."""
    from unetprune.export import onnx_files

    return [str(p) for p in onnx_files(config, LAYOUT)]


def get_final_outputs():
    outs = get_report_outputs() + [CFG] + [str(p) for p in FAMILY.final_outputs(LAYOUT, config)]
    outs += get_onnx_outputs()  # export.smk
    if config["tracking"]["enabled"]:
        outs.append(str(LAYOUT.mlflow_json))
    return outs
