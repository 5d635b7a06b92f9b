# Evaluation: one JSON per model (FID with its backend, segmentation score, L1/PSNR/SSIM,
# params, MACs in both conventions, CPU latency).  The original's evaluation also fills
# the real-image statistics cache that the sweeps and the other evaluations reuse.


rule evaluate_original:
    input:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        lse=get_lse_weights(),
    output:
        str(LAYOUT.eval_json(ORIGINAL)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "evaluate"),
        code=code("evaluate"),
        cache=str(LAYOUT.fid_cache),
        split=config["evaluate"]["split"],
    log:
        log("evaluate_original"),
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune evaluate {params.config:q} --checkpoint {input.ckpt:q} "
        "--split {params.split:q} --cache-dir {params.cache:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_variant:
    input:
        ckpt=get_eval_checkpoint,
        stats=str(LAYOUT.eval_json(ORIGINAL)),
        lse=get_lse_weights(),
    output:
        str(LAYOUT.eval_json("{variant}", "{stage}")),
    params:
        config=config_args,
        cfg=sections("seed", "data", "evaluate"),
        code=code("evaluate"),
        cache=str(LAYOUT.fid_cache),
        split=config["evaluate"]["split"],
    log:
        log("evaluate_{variant}__{stage}"),
    threads: config["workflow"]["eval_threads"]
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "OMP_NUM_THREADS={threads} unetprune evaluate {params.config:q} --checkpoint {input.ckpt:q} "
        "--split {params.split:q} --cache-dir {params.cache:q} --out {output:q} > {log:q} 2>&1"


if get_lse_weights():

    # Wav2Lip: the stand-in LSE network (syncnet_python's S architecture) trained offline on the
    # experiment's training clips, when no SyncNet v2 weights are configured
    # (evaluate.lse_backend standin): LSE-D/LSE-C then compare models relative to each other.
    rule lse_standin:
        input:
            data=get_data_marker(),
        output:
            str(LAYOUT.lse_standin),
        params:
            code=code("lse"),
            data=str(LAYOUT.talking_root),
            steps=config["evaluate"]["lse_standin_steps"],
            seed=config["seed"],
        log:
            log("lse_standin"),
        threads: config["workflow"]["train_threads"]
        resources:
            mem_mb=config["workflow"]["mem_mb"],
        conda:
            "../envs/unetprune.yaml"
        shell:
            "unetprune train-lse-standin --data {params.data:q} --out {output:q} --steps {params.steps} "
            "--seed {params.seed} --threads {threads} --no-progress > {log:q} 2>&1"
