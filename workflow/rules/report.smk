# The paper's tables and figures, report.md and the DVC metrics/plots files, from the
# JSON files of every run.


rule report:
    input:
        evals=get_eval_files(),
        sensitivity=[str(LAYOUT.sensitivity_json(layer)) for layer in get_layers()],
        original=str(LAYOUT.train_log(ORIGINAL)),
    output:
        get_report_outputs(),
    params:
        config=config_args,
        cfg=sections("experiment", "report", "variants", "baselines", "sensitivity", "finetune", "evaluate"),
        code=code("report"),
    log:
        log("report"),
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune report {params.config:q} > {log:q} 2>&1"
