# Fine-tuning: start from the pruned weights, same losses, the baseline's discriminator
# re-used (PAPER.md), schedule from the config's `finetune` section.  Resumable like training.


rule finetune_variant:
    input:
        pruned=f"{RES}/variants/{{variant}}/pruned.pt",
        baseline=f"{RES}/baseline/checkpoint.pt",
    output:
        ckpt=f"{RES}/variants/{{variant}}/finetune/checkpoint.pt",
        log=f"{RES}/variants/{{variant}}/finetune/train.json",
    params:
        config_file=CFG,
        cfg=sections("seed", "data", "train", "finetune"),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        f"{LOGS}/finetune_{{variant}}.log",
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "unetprune train --config {params.config_file} --finetune --init-from {input.pruned} "
        "--init-discriminator-from {input.baseline} --out {params.out} --resume --quiet "
        "--set train.threads={threads} > {log} 2>&1"
