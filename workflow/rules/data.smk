# Data: the offline demo set is built by the package; pix2pix benchmarks are fetched
# (checksummed, safely extracted); Cityscapes is prepared from the user's official zips.


rule demo_data:
    output:
        f"{data_root(config)}/demo.json",
    params:
        config_file=CFG,
        cfg=sections("demo"),
    log:
        f"{LOGS}/demo_data.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/unetprune.yaml"
    shell:
        "unetprune demo-data --config {params.config_file} --force > {log} 2>&1"


rule fetch_data:
    output:
        f"{data_root(config)}/dataset.lock.json",
    params:
        name=config["data"]["dataset"],
        source=(f"--from {config['data']['source']}" if config["data"]["source"] else ""),
        zips=config["data"]["zips"],
        root=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/fetch_data.log",
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
            shell("unetprune data prepare-cityscapes --zips {params.zips} --root {params.root} --no-progress > {log} 2>&1")
        else:
            shell("unetprune data fetch {params.name} --root {params.root} {params.source} --no-progress > {log} 2>&1")
