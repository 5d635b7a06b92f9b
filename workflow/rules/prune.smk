# Pruned variants: inner / cut from the config's `variants`, and global baselines matched
# to each of them (same parameter count or MACs, within 1%).


rule prune_variant:
    input:
        unpack(get_prune_inputs),
    output:
        ckpt=f"{RES}/variants/{{variant}}/pruned.pt",
        info=f"{RES}/variants/{{variant}}/prune.json",
    params:
        args=lambda wc: " ".join(pipeline.prune_cli_args(config, wc.variant, RES)),
    log:
        f"{LOGS}/prune_{{variant}}.log",
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        "../envs/unetprune.yaml"
    shell:
        "unetprune prune --checkpoint {input.ckpt} {params.args} --out {output.ckpt} "
        "--json {output.info} > {log} 2>&1"
