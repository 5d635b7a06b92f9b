# Pruned variants: inner / cut from the config's `variants`, and global baselines matched
# to each of them (same parameter count or MACs, within 1%).


rule prune_variant:
    input:
        unpack(get_prune_inputs),
    output:
        ckpt=str(LAYOUT.pruned_checkpoint("{variant}")),
        info=str(LAYOUT.prune_json("{variant}")),
    params:
        args=lambda wc: pipeline.prune_cli_args(config, wc.variant),
        code=code("prune"),
    log:
        log("prune_{variant}"),
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        CONDA_ENV
    shell:
        "unetprune prune --checkpoint {input.ckpt:q} {params.args:q} --out {output.ckpt:q} "
        "--json {output.info:q} > {log:q} 2>&1"
