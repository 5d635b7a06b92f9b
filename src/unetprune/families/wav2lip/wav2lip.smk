# The wav2lip family's own jobs, included by the Snakefile after the core rules
# (Wav2LipFamily.workflow_rules); they use the names of workflow/rules/common.smk.
# The core jobs get their extra inputs from Wav2LipFamily.job_inputs: training and fine-tuning
# read the expert trained here, the scoring jobs the stand-in LSE network trained here.


# Wav2Lip's lip-sync expert (SyncNet on lower halves + mel windows), trained first and then
# frozen inside the generator's loss (train.syncnet_wt); resumable like the generator.  With
# model.wav2lip.expert_init_weights (a released lipsync_expert.pth) the job imports that file
# instead of training.
EXPERT_INIT = (config["model"].get(FAMILY.name) or {}).get("expert_init_weights")
if EXPERT_INIT:
    TRAIN_EXPERT = (
        "unetprune import {params.config:q} --family wav2lip-expert --from {input.init:q} "
        "--out {output.ckpt:q} > {log:q} 2>&1"
    )
else:
    TRAIN_EXPERT = (
        "unetprune train --expert {params.config:q} --out {params.out:q} --resume --quiet "
        "--set train.threads={threads} > {log:q} 2>&1"
    )


rule train_expert:
    input:
        data=get_data_marker(),
        init=EXPERT_INIT or [],
    output:
        ckpt=str(LAYOUT.expert_checkpoint),
    params:
        config=config_args,
        cfg=sections("seed", "data", "demo", "model", "train"),
        code=code("import_") if EXPERT_INIT else code("train"),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        log("train_expert"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        TRAIN_EXPERT


if "lse" in family_inputs("evaluate"):

    # The stand-in LSE network (syncnet_python's S architecture) trained offline on the
    # experiment's training clips, when no SyncNet v2 weights are configured
    # (evaluate.lse_backend standin): LSE-D/LSE-C then compare models relative to each other.
    rule lse_standin:
        input:
            data=get_data_marker(),
        output:
            family_inputs("evaluate")["lse"],
        params:
            code=code("lse"),
            data=str(LAYOUT.talking_root),
            steps=config["evaluate"]["lse_standin_steps"],
            blur=config["evaluate"]["lse_standin_blur"],
            seed=config["seed"],
        log:
            log("lse_standin"),
        threads: config["workflow"]["train_threads"]
        resources:
            mem_mb=config["workflow"]["mem_mb"],
        conda:
            CONDA_ENV
        shell:
            "unetprune train-lse-standin --data {params.data:q} --out {output:q} --steps {params.steps} "
            "--blur {params.blur} --seed {params.seed} --threads {threads} --no-progress > {log:q} 2>&1"


# The same test clip through the original and every variant, side by side, with its audio
# (figures/samples.mp4) and as a frame grid (figures/samples_video.png).
rule sample_video:
    input:
        ckpts=[str(LAYOUT.checkpoint(m, s)) for m, s in pipeline.models(config)
               if s in (ORIGINAL, pipeline.final_stage(config))],
        data=get_data_marker(),
    output:
        video=str(LAYOUT.video("samples")),
        grid=str(LAYOUT.figure("samples_video")),
    params:
        config=config_args,
        cfg=sections("seed", "data", "evaluate", "variants", "baselines"),
        code=code("video"),
    log:
        log("sample_video"),
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune sample-video {params.config:q} > {log:q} 2>&1"


# LRS2 (licence-gated, never downloaded): the user's raw folder (data.source:
# <speaker>/<clip>.mp4 + train/val/test.txt) preprocessed into the data root as the
# reference preprocess.py does (face crops + 16 kHz audio); resumable clip by clip.
if config["data"]["dataset"] == "lrs2" and config["data"]["source"]:

    rule preprocess_lrs2:
        output:
            str(LAYOUT.talking_summary),
        params:
            code=code("talking"),
            source=config["data"]["source"],
            root=lambda wc, output: os.path.dirname(output[0]),
            media=config["data"]["media"],
        log:
            log("preprocess_lrs2"),
        threads: 1
        resources:
            mem_mb=4000,
        conda:
            CONDA_ENV
        shell:
            "unetprune data preprocess-lrs2 --root {params.source:q} --out {params.root:q} --no-progress "
            "--max-seconds {params.media[max_seconds]:q} --max-frames {params.media[max_frames]:q} "
            "--max-pixels {params.media[max_pixels]:q} > {log:q} 2>&1"
