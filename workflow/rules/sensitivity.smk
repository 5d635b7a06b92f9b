# Per-layer sensitivity: one job per layer; each loads the model, the evaluation split and
# the cached real statistics once and scores every ratio (PAPER.md protocol: one layer at a
# time, no fine-tuning).


rule sensitivity_layer:
    input:
        ckpt=f"{RES}/baseline/checkpoint.pt",
        stats=f"{RES}/eval/original.json",
    output:
        f"{RES}/sensitivity/{{layer}}.json",
    params:
        config_file=CFG,
        cfg=sections("seed", "data", "evaluate", "sensitivity"),
        out=lambda wc, output: os.path.dirname(output[0]),
        cache=f"{RES}/fid_stats",
    log:
        f"{LOGS}/sensitivity_{{layer}}.log",
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune sweep --config {params.config_file} --checkpoint {input.ckpt} "
        "--layer {wildcards.layer} --out-dir {params.out} --cache-dir {params.cache} > {log} 2>&1"
