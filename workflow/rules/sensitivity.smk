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
    threads: EVAL_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune sweep {params.config:q} --checkpoint {input.ckpt:q} "
        "--layer {wildcards.layer} --cache-dir {params.cache:q} > {log:q} 2>&1"


# The latency table of a latency plan (docs/plan.md): each swept layer alone at each ratio's width,
# timed on the plan's device at its threads and the experiment's input size, cached with the sweep.
rule latency_table:
    wildcard_constraints:
        device="cpu|cuda",
        threads=r"[0-9]+|na",
    input:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
    output:
        str(LAYOUT.sensitivity_dir / "latency-{device}-t{threads}.json"),
    params:
        config=config_args,
        cfg=sections("data", "sensitivity"),
        code=code("sweep"),
        threads=lambda wc: wc.threads if wc.threads != "na" else "1",
    log:
        log("latency_{device}_t{threads}"),
    threads: lambda wc: int(wc.threads) if wc.threads != "na" else 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=lambda wc: 1 if wc.device == "cuda" else 0,
    conda:
        CONDA_ENV
    shell:
        "unetprune sweep {params.config:q} --checkpoint {input.ckpt:q} --latency {wildcards.device} "
        "--latency-threads {params.threads} --latency-out {output:q} > {log:q} 2>&1"
