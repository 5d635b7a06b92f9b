# Evaluation: one JSON per model (FID with its backend, segmentation score, L1/PSNR/SSIM,
# params, MACs in both conventions, CPU latency).  The original's evaluation also fills
# the real-image statistics cache that the sweeps and the other evaluations reuse.


rule evaluate_original:
    input:
        ckpt=f"{RES}/baseline/checkpoint.pt",
    output:
        f"{RES}/eval/original.json",
    params:
        config_file=CFG,
        cfg=sections("seed", "data", "evaluate"),
        cache=f"{RES}/fid_stats",
        split=config["evaluate"]["split"],
    log:
        f"{LOGS}/evaluate_original.log",
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune evaluate --config {params.config_file} --checkpoint {input.ckpt} "
        "--split {params.split} --cache-dir {params.cache} --out {output} > {log} 2>&1"


rule evaluate_variant:
    input:
        ckpt=get_eval_checkpoint,
        stats=f"{RES}/eval/original.json",
    output:
        f"{RES}/eval/{{variant}}__{{stage}}.json",
    params:
        config_file=CFG,
        cfg=sections("seed", "data", "evaluate"),
        cache=f"{RES}/fid_stats",
        split=config["evaluate"]["split"],
    log:
        f"{LOGS}/evaluate_{{variant}}__{{stage}}.log",
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune evaluate --config {params.config_file} --checkpoint {input.ckpt} "
        "--split {params.split} --cache-dir {params.cache} --out {output} > {log} 2>&1"
