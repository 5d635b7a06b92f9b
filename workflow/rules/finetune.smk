# Fine-tuning: start from the pruned weights, same losses, the original's discriminator
# re-used (docs/method.md), schedule from the config's `finetune` section.  Resumable like training.


rule finetune_variant:
    input:
        pruned=str(LAYOUT.pruned_checkpoint("{variant}")),
        original=str(LAYOUT.checkpoint(ORIGINAL)),
        **family_inputs("finetune"),
    output:
        ckpt=str(LAYOUT.checkpoint("{variant}", FINETUNED)),
        log=str(LAYOUT.train_log("{variant}", FINETUNED)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "train", "finetune"),
        code=code("train"),
        family=family_args("finetune"),
        distill=lambda wc: pipeline.finetune_cli_args(config, wc.variant),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        log("finetune_{variant}"),
    threads: FINETUNE_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "unetprune train {params.config:q} {params.family:q} {params.distill:q} --finetune --init-from {input.pruned:q} "
        "--init-discriminator-from {input.original:q} --out {params.out:q} --resume --quiet "
        "--set train.threads={threads} > {log:q} 2>&1"
