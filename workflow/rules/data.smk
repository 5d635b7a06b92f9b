# Data: the offline demo set is built by the package; pix2pix benchmarks are fetched
# (checksummed, safely extracted); Cityscapes is prepared from the user's official zips.
# Values from the config reach the shell only through Snakemake's quoting (`:q`).


rule demo_data:
    input:
    output:
        str(LAYOUT.demo_manifest),
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
        "../envs/unetprune.yaml"
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
        "../envs/unetprune.yaml"
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
        "../envs/unetprune.yaml"
    shell:
        "unetprune data verify --root {params.root:q} --name {params.name:q} --quick > {output:q} 2> {log:q}"


# LRS2 (Wav2Lip; licence-gated, never downloaded): the user's raw folder (data.source:
# <speaker>/<clip>.mp4 + train/val/test.txt) preprocessed into the data root as the
# reference preprocess.py does (face crops + 16 kHz audio); resumable clip by clip.
if config["data"]["dataset"] == "lrs2" and config["data"]["source"]:

    rule preprocess_lrs2:
        output:
            str(LAYOUT.talking_summary),
        params:
            code=code("talking"),
            source=config["data"]["source"],
            root=lambda wc, output: os.path.dirname(output[0]),
        log:
            log("preprocess_lrs2"),
        threads: 1
        resources:
            mem_mb=4000,
        conda:
            "../envs/unetprune.yaml"
        shell:
            "unetprune data preprocess-lrs2 --root {params.source:q} --out {params.root:q} --no-progress "
            "> {log:q} 2>&1"
