# unetprune: fetch data → train baseline → sensitivity → prune variants → fine-tune →
# evaluate → tables/figures/report → MLflow.  Every rule calls the `unetprune` CLI.
#
#   snakemake --cores 2                                   # the offline demo (config/config.yaml)
#   snakemake --cores 8 --configfile config/experiments/pix2pix_facades.yaml
#   snakemake --profile profiles/slurm --configfile config/experiments/pix2pix_cityscapes.yaml
from snakemake.utils import min_version

min_version("9.0")


# The default experiment is the offline demo.  A --configfile REPLACES it (Snakemake would
# otherwise merge the paper config over the demo's keys); --config key=value overrides apply
# on top of whichever config file is used.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    variant=r"[A-Za-z0-9.\-]+",
    stage=r"pruned|finetuned",
    layer=r"(down|up)[0-9]+",

include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/track.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True


# Phase targets (what each `dvc.yaml` stage asks for): `snakemake --cores 2 phase_baseline`.
rule phase_data:
    input:
        get_data_marker(),


rule phase_baseline:
    input:
        f"{RES}/baseline/checkpoint.pt",


rule phase_sensitivity:
    input:
        expand(f"{RES}/sensitivity/{{layer}}.json", layer=get_layers()),


rule phase_variants:
    input:
        expand(f"{RES}/variants/{{variant}}/pruned.pt", variant=get_variants()),
        expand(f"{RES}/variants/{{variant}}/finetune/checkpoint.pt", variant=get_variants())
        if config["finetune"]["enabled"] else [],


rule phase_evaluate:
    input:
        get_eval_files(),


rule phase_report:
    input:
        get_report_outputs(),


rule phase_track:
    input:
        get_final_outputs(),
