# Shared helpers: config validation (before any job runs), paths, per-rule parameters.
import json
import os
from pathlib import Path

from unetprune.config import data_root, validate_config
from unetprune import pipeline

# Validate against config/schema.yaml (fills defaults; errors name the key), plus the
# checks that need the architecture (layer names, levels, k).  Raises before the DAG is built.
_validated = validate_config(dict(config))
pipeline.validate_experiment(_validated)
config.clear()
config.update(_validated)

EXP = config["experiment"]
RES = f"results/{EXP}"
CFG = f"{RES}/config.yaml"  # the resolved config every rule's CLI call reads
LOGS = f"{RES}/logs"
GPU = config["workflow"]["gpus_per_job"]
TRAIN_THREADS = config["workflow"]["train_threads"]


def _write_resolved_config():
    """Write the validated config for the CLI calls, only when its content changed (its
    mtime is not an input of any job: each job reruns on changes to the config
    sections it uses, through its `params`)."""
    import yaml

    text = yaml.safe_dump(config, sort_keys=True)
    p = Path(CFG)
    if not p.exists() or p.read_text() != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(p)


_write_resolved_config()


def sections(*keys):
    """JSON of the config sections a job depends on, as a `params` value (a change reruns the job)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True)


def get_data_marker():
    """The file that proves the dataset is in place (input of training/evaluation)."""
    ds, root = config["data"]["dataset"], str(data_root(config))
    if ds == "demo":
        return f"{root}/demo.json"
    if ds == "folder":
        return []
    return f"{root}/dataset.lock.json"


def get_variants():
    return list(pipeline.all_variants(config))


def get_layers():
    return pipeline.sensitivity_layers(config)


def get_eval_files():
    return [str(p) for p in pipeline.eval_files(config)]


def get_prune_inputs(wildcards):
    ref = pipeline.variant_reference(config, wildcards.variant)
    ins = {"ckpt": f"{RES}/baseline/checkpoint.pt"}
    if ref:
        ins["ref"] = f"{RES}/variants/{ref}/pruned.pt"
    return ins


def get_eval_checkpoint(wildcards):
    if wildcards.stage == "pruned":
        return f"{RES}/variants/{wildcards.variant}/pruned.pt"
    return f"{RES}/variants/{wildcards.variant}/finetune/checkpoint.pt"


def get_report_outputs():
    return [f"{RES}/report.md", f"{RES}/tables/main.csv", f"{RES}/tables/sensitivity.csv",
            f"{RES}/figures/sensitivity.png", f"{RES}/figures/tradeoff.png", f"{RES}/figures/samples.png"]


def get_final_outputs():
    outs = get_report_outputs()
    if config["tracking"]["enabled"]:
        outs.append(f"{RES}/mlflow.json")
    return outs

