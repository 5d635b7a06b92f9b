# unetprune: fetch data → train the original → sensitivity → prune variants → fine-tune →
# evaluate → tables/figures/report → MLflow.  One DAG for every model family (model.family): the
# family adds its own jobs, inputs and targets (e.g. Wav2Lip's lip-sync expert, LSE network and
# sample video; unetprune.family.ModelFamily).  Every rule calls the `unetprune` CLI; every
# path comes from the package's results layout (unetprune.layout).  This file is the only
# description of the DAG: `dvc repro` runs it (dvc.yaml), and so do SLURM clusters.
#
#   snakemake --cores 2                                   # the offline demo (config/config.yaml)
#   snakemake --cores 8 --configfile config/experiments/pix2pix_facades.yaml
#   snakemake --profile profiles/slurm --configfile config/experiments/pix2pix_cityscapes.yaml
#   snakemake --cores 2 --configfile config/wav2lip_demo.yaml   # the offline Wav2Lip demo
from snakemake.utils import min_version

min_version("9.0")

report: "workflow/report/workflow.rst"  # `snakemake --report report.html`: figures and tables with captions


# The default experiment is the offline demo.  A --configfile REPLACES it (Snakemake would
# otherwise merge the paper config over the demo's keys); --config key=value overrides apply
# on top of whichever config file is used.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    variant=r"[A-Za-z0-9.\-]+",
    stage=r"pruned|finetuned",
    layer=r"[a-z]+[0-9]+",


include: "workflow/rules/config.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/track.smk"


# the model family's own jobs (ModelFamily.workflow_rules), e.g. Wav2Lip's expert and sample video
for _family_rules in FAMILY.workflow_rules():

    include: str(_family_rules)


rule all:
    input:
        get_final_outputs(),
    default_target: True
