# MLflow mirror of the results: one run per variant and stage, the sweep as a parent run
# with a child per layer.  Idempotent: re-running updates the same runs.


rule track:
    input:
        get_report_outputs(),
    output:
        f"{RES}/mlflow.json",
    params:
        config_file=CFG,
        uri=config["tracking"]["uri"],
    log:
        f"{LOGS}/track.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "MLFLOW_DISABLE_TELEMETRY=true unetprune track --config {params.config_file} --uri '{params.uri}' > {log} 2>&1"
