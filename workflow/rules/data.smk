# Data: the offline demo set is built by the model family (`unetprune demo-data`); the image
# benchmarks are fetched (checksummed, safely extracted); Cityscapes is prepared from the user's
# official zips.  A family's own data jobs are in its rule file (ModelFamily.workflow_rules).
# Values from the config reach the shell only through Snakemake's quoting (`:q`).


rule demo_data:
    input:
    output:
        str(FAMILY.demo_manifest(LAYOUT)),
    params:
        config=config_args,
        cfg=sections("demo"),
        code=code("demo"),
    log:
        log("demo_data"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        CONDA_ENV
    shell:
        "unetprune demo-data {params.config:q} --force > {log:q} 2>&1"


rule fetch_data:
    input:
    output:
        str(LAYOUT.dataset_lock),
    params:
        config=config_args,
        cfg=sections("data"),
        code=code("data"),
        name=config["data"]["dataset"],
        source=config["data"]["source"] or "",
        zips=config["data"]["zips"] or "",
        root=lambda wc, output: os.path.dirname(output[0]),
    log:
        log("fetch_data"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        CONDA_ENV
    run:
        if params.name == "cityscapes":
            if not params.zips:
                raise ValueError("config error at 'data.zips': Cityscapes is licence-gated; download "
                                 "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from "
                                 "https://www.cityscapes-dataset.com/downloads/ and set data.zips to their folder")
            shell("unetprune data prepare-cityscapes --zips {params.zips:q} --root {params.root:q} "
                  "--no-progress > {log:q} 2>&1")
        elif params.source:
            shell("unetprune data fetch {params.name:q} --root {params.root:q} --from {params.source:q} "
                  "--no-progress > {log:q} 2>&1")
        else:
            shell("unetprune data fetch {params.name:q} --root {params.root:q} --no-progress > {log:q} 2>&1")


# A fetched or prepared dataset is checked against its lock file before any job reads it:
# counts, every file's size and the sha256 of a random sample (`unetprune data verify --quick`).
# The marker records the check; a dataset changed after the check is found by
# `unetprune data verify --root DIR` (full) or by deleting the marker.
rule verify_data:
    input:
        lock=str(LAYOUT.dataset_lock),
    output:
        str(LAYOUT.dataset_verified),
    params:
        code=code("data"),
        name=config["data"]["dataset"],
        root=lambda wc, input: os.path.dirname(input.lock),
    log:
        log("verify_data"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        CONDA_ENV
    shell:
        "unetprune data verify --root {params.root:q} --name {params.name:q} --quick > {output:q} 2> {log:q}"
