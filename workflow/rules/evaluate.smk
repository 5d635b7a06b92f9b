# Evaluation: one JSON per model (FID with its backend, segmentation score, L1/PSNR/SSIM,
# params, MACs in both conventions, CPU latency).  The original's evaluation also fills
# the real-image statistics cache that the sweeps and the other evaluations reuse; every
# sweep and evaluation waits for it, so it runs on the training threads.  Every model's
# latency is timed at workflow.eval_threads, whatever threads its job scores on.


rule evaluate_original:
    input:
        unpack(get_eval_onnx),
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        **family_inputs("evaluate"),
    output:
        str(LAYOUT.eval_json(ORIGINAL)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "evaluate"),
        code=code("evaluate"),
        cache=str(LAYOUT.fid_cache),
        split=config["evaluate"]["split"],
        # the original's evaluation also scores the trivial generators (the sanity gate)
        sanity=lambda wildcards: "" if "variant" in wildcards.keys() else "--sanity",
        # ONNX Runtime latency: of the export job's file (export.smk), not of a second export
        ort=eval_ort_args,
        latency_threads=EVAL_THREADS,
    log:
        log("evaluate_original"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune evaluate {params.config:q} --checkpoint {input.ckpt:q} "
        "--split {params.split:q} --cache-dir {params.cache:q} {params.sanity} {params.ort} "
        "--latency-threads {params.latency_threads} --out {output:q} > {log:q} 2>&1"


# a pruned or fine-tuned variant: the same job, after the original's (its real statistics)
use rule evaluate_original as evaluate_variant with:
    input:
        unpack(get_eval_onnx),
        ckpt=get_eval_checkpoint,
        stats=str(LAYOUT.eval_json(ORIGINAL)),
        **family_inputs("evaluate"),
    output:
        str(LAYOUT.eval_json("{variant}", "{stage}")),
    log:
        log("evaluate_{variant}__{stage}"),
    threads: EVAL_THREADS
