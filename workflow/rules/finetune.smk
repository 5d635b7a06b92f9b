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
        cfg=sections("seed", "data", "train", "finetune"),
        out=f"{RES}/variants/{{variant}}/finetune",
    log:
        f"{LOGS}/finetune_{{variant}}.log",
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    shell:
        "unetprune train --config {CFG} --finetune --init-from {input.pruned} "
        "--init-discriminator-from {input.baseline} --out {params.out} --resume --quiet "
        "--set train.threads={threads} > {log} 2>&1"
