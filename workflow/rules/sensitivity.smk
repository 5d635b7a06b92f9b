# Per-layer sensitivity: one job per layer; each loads the model, the evaluation split and
# the cached real statistics once and scores every ratio (docs/method.md: one layer at a
# time, no fine-tuning).


rule sensitivity_layer:
    input:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        stats=str(LAYOUT.eval_json(ORIGINAL)),
        **family_inputs("sweep"),
    output:
        str(LAYOUT.sensitivity_json("{layer}")),
    params:
        config=config_args,
        cfg=sections("seed", "data", "evaluate", "sensitivity"),
        code=code("sweep"),
        cache=str(LAYOUT.fid_cache),
    log:
        log("sensitivity_{layer}"),
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune sweep {params.config:q} --checkpoint {input.ckpt:q} "
        "--layer {wildcards.layer} --cache-dir {params.cache:q} > {log:q} 2>&1"
