# Training the original (unpruned) pix2pix generator.  checkpoint.pt appears only when
# training has finished; the resumable state (resume.pt) is not an output, so a killed
# job continues where it stopped.


rule train_original:
    input:
        data=get_data_marker(),
    output:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        log=str(LAYOUT.train_log(ORIGINAL)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "demo", "model", "train"),
        code=code("train"),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        log("train_original"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "unetprune train {params.config:q} --out {params.out:q} --resume --quiet "
        "--set train.threads={threads} > {log:q} 2>&1"
