# Shared helpers: config validation (before any job runs), paths, per-rule parameters.
# Every path comes from the package's results layout (unetprune.layout); every rule
# carries the digest of the code its command runs, so editing a module reruns exactly
# the jobs that import it (unetprune.provenance).
import json
import os

from unetprune.config import validate
from unetprune.family import family_for_config
from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED, Layout
from unetprune.provenance import code_digest

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
WAV2LIP = config["model"]["family"] == "wav2lip"   # talking faces: expert + LSE jobs, sample video
GPU = config["workflow"]["gpus_per_job"]
TRAIN_THREADS = config["workflow"]["train_threads"]


def sections(*keys):
    """JSON of the config sections a job depends on, as a `params` value (a change reruns the job)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


FAMILY = family_for_config(config)


def code(command):
    """Digest of the code `unetprune <command>` runs, the model family's included (a change
    reruns the job)."""
    return code_digest(f"unetprune.commands.{command}", type(FAMILY).__module__)


def code_of(module):
    """Digest of the package code a `run:` block imports from ``module``."""
    return code_digest(module)


def log(job):
    return str(LAYOUT.log(job))


def get_data_marker():
    """The file that proves the dataset is in place (input of training/evaluation): the demo's
    manifest, or for fetched/prepared datasets the marker of `verify_data` (data.smk)."""
    ds = config["data"]["dataset"]
    if ds == "demo":
        return str(LAYOUT.demo_manifest)
    if ds == "folder":
        return []
    if ds == "lrs2":
        return str(LAYOUT.talking_summary)
    return str(LAYOUT.dataset_verified)


# --- Wav2Lip: the lip-sync expert of the generator's loss, the LSE network of its evaluation --
def get_expert():
    """The expert checkpoint that training/fine-tuning of a Wav2Lip generator needs ([] otherwise)."""
    return str(LAYOUT.expert_checkpoint) if WAV2LIP else []


def expert_args(wildcards, input):
    """`--set model.expert_checkpoint=<the expert input>` for Wav2Lip jobs (derived: no rerun trigger)."""
    return ["--set", f"model.expert_checkpoint={input.expert}"] if WAV2LIP else []


def get_lse_weights():
    """The stand-in LSE network the workflow trains (evaluate.lse_backend standin, no
    evaluate.lse_weights), an input of every Wav2Lip scoring job; [] otherwise."""
    ev = config["evaluate"]
    if WAV2LIP and ev["lse_backend"] == "standin" and not ev["lse_weights"]:
        return str(LAYOUT.lse_standin)
    return []


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
    return ins


def get_eval_checkpoint(wildcards):
    return str(LAYOUT.checkpoint(wildcards.variant, wildcards.stage))


def get_report_outputs():
    return [str(p) for p in LAYOUT.report_outputs()]


def get_final_outputs():
    outs = get_report_outputs() + [CFG]
    if WAV2LIP:
        outs.append(str(LAYOUT.video("samples")))
    if config["tracking"]["enabled"]:
        outs.append(str(LAYOUT.mlflow_json))
    return outs

