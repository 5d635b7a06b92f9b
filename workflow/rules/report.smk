# The paper's tables and figures, and report.md, from the JSON files of every run.


rule report:
    input:
        evals=get_eval_files(),
        sensitivity=expand(f"{RES}/sensitivity/{{layer}}.json", layer=get_layers()),
        baseline=f"{RES}/baseline/train.json",
    output:
        get_report_outputs(),
    params:
        config_file=CFG,
        cfg=sections("experiment", "report", "variants", "baselines", "sensitivity", "finetune", "evaluate"),
    log:
        f"{LOGS}/report.log",
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune report --config {params.config_file} > {log} 2>&1"
