# Baseline pix2pix training. checkpoint.pt appears only when training has finished; the
# resumable state (resume.pt) is not an output, so a killed job continues where it stopped.


rule train_baseline:
    input:
        data=get_data_marker(),
    output:
        ckpt=f"{RES}/baseline/checkpoint.pt",
        log=f"{RES}/baseline/train.json",
    params:
        config_file=CFG,
        cfg=sections("seed", "data", "demo", "model", "train"),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        f"{LOGS}/train_baseline.log",
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "unetprune train --config {params.config_file} --out {params.out} --resume --quiet "
        "--set train.threads={threads} > {log} 2>&1"
