# Training the original (unpruned) generator (pix2pix, or Wav2Lip with its frozen expert).  checkpoint.pt appears only when
# training has finished; the resumable state (resume.pt) is not an output, so a killed
# job continues where it stopped.  With model.init_weights (a released pix2pix
# latest_net_G.pth) the job imports that file instead of training (`unetprune import`:
# no training, a fresh PatchGAN for fine-tuning; train.json records the file's sha256).
INIT_WEIGHTS = config["model"]["init_weights"]

if INIT_WEIGHTS:
    TRAIN_ORIGINAL = (
        "unetprune import {params.config:q} --from {input.init:q} --out {output.ckpt:q} "
        "--record {output.log:q} > {log:q} 2>&1"
    )
else:
    TRAIN_ORIGINAL = (
        "unetprune train {params.config:q} {params.expert:q} --out {params.out:q} --resume --quiet "
        "--set train.threads={threads} > {log:q} 2>&1"
    )

if WAV2LIP:

    # Wav2Lip's lip-sync expert (SyncNet on lower halves + mel windows), trained first and then
    # frozen inside the generator's loss (train.syncnet_wt); resumable like the generator.
    rule train_expert:
        input:
            data=get_data_marker(),
        output:
            ckpt=str(LAYOUT.expert_checkpoint),
        params:
            config=config_args,
            cfg=sections("seed", "data", "demo", "model", "train"),
            code=code("train"),
            out=lambda wc, output: os.path.dirname(output.ckpt),
        log:
            log("train_expert"),
        threads: TRAIN_THREADS
        resources:
            mem_mb=config["workflow"]["mem_mb"],
            gpu=GPU,
        conda:
            "../envs/unetprune.yaml"
        shell:
            "unetprune train --expert {params.config:q} --out {params.out:q} --resume --quiet "
            "--set train.threads={threads} > {log:q} 2>&1"


rule train_original:
    input:
        data=get_data_marker(),
        init=INIT_WEIGHTS or [],
        expert=get_expert(),
    output:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        log=str(LAYOUT.train_log(ORIGINAL)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "demo", "model", "train"),
        code=code("import_" if INIT_WEIGHTS else "train"),
        expert=expert_args,
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        log("train_original"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        TRAIN_ORIGINAL
