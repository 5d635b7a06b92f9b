# MLflow mirror of the results: one run per variant and stage (training curves per epoch, the
# jobs' start/end times, its generator as a loadable pyfunc model registered under
# <experiment>-generator), the sweep as a parent run with a child per layer.  Artifacts of a
# local store go under tracking.artifact_root as mlflow-artifacts:/... (movable store).
# Idempotent: re-running updates the same runs.


rule track:
    input:
        report=get_report_outputs(),
        onnx=get_onnx_outputs(),  # export.smk: logged beside each PyTorch model
    output:
        str(LAYOUT.mlflow_json),
    params:
        config=config_args,
        cfg=sections("tracking"),
        code=code("track"),
        uri=config["tracking"]["uri"],
    log:
        log("track"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        CONDA_ENV
    shell:
        "MLFLOW_DISABLE_TELEMETRY=true unetprune track {params.config:q} --uri {params.uri:q} > {log:q} 2>&1"
