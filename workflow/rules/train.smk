# Training the original (unpruned) generator of the model family (with the family's extra inputs,
# e.g. Wav2Lip's frozen lip-sync expert).  checkpoint.pt appears only when
# training has finished; the resumable state (resume.pt) is not an output, so a killed
# job continues where it stopped.  With model.<family>.init_weights (released weights, e.g. a
# pix2pix latest_net_G.pth) the job imports that file instead of training (`unetprune import`, a
# command of the families that import released weights; train.json records the file's sha256).
INIT_WEIGHTS = (config["model"].get(FAMILY.name) or {}).get("init_weights")

if INIT_WEIGHTS:
    TRAIN_ORIGINAL = (
        "unetprune import {params.config:q} {params.family:q} --from {input.init:q} --out {output.ckpt:q} "
        "--record {output.log:q} > {log:q} 2>&1"
    )
else:
    TRAIN_ORIGINAL = (
        "unetprune train {params.config:q} {params.family:q} --out {params.out:q} --resume --quiet "
        "--set train.threads={threads} > {log:q} 2>&1"
    )

rule train_original:
    input:
        data=get_data_marker(),
        init=INIT_WEIGHTS or [],
        **family_inputs("train"),
    output:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
        log=str(LAYOUT.train_log(ORIGINAL)),
    params:
        config=config_args,
        cfg=sections("seed", "data", "demo", "model", "train"),
        code=code("import_" if INIT_WEIGHTS else "train"),
        family=family_args("train"),
        out=lambda wc, output: os.path.dirname(output.ckpt),
    log:
        log("train_original"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=config["workflow"]["mem_mb"],
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        TRAIN_ORIGINAL
