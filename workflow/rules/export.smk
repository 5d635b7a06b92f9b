# ONNX export of every deployable model: the original and each variant at its final stage
# (`unetprune export`: eval mode, named inputs, dynamic batch, opset in the file's metadata),
# each checked against PyTorch in ONNX Runtime before it is written.  The MLflow runs of these
# models log the file beside the PyTorch model (track.smk).


rule export_original:
    input:
        ckpt=str(LAYOUT.checkpoint(ORIGINAL)),
    output:
        str(LAYOUT.onnx_model(ORIGINAL)),
    params:
        code=code("export"),
    log:
        log("export_original"),
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune export --checkpoint {input.ckpt:q} --out {output:q} "
        "> {log:q} 2>&1"


# a variant at its final stage: the same job
use rule export_original as export_variant with:
    input:
        ckpt=get_eval_checkpoint,
    output:
        str(LAYOUT.onnx_model("{variant}", "{stage}")),
    log:
        log("export_{variant}__{stage}"),
