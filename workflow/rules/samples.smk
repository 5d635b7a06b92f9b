# Wav2Lip: the same test clip through the original and every variant, side by side, with its
# audio (figures/samples.mp4) and as a frame grid (figures/samples_video.png).

if WAV2LIP:

    rule sample_video:
        input:
            ckpts=[str(LAYOUT.checkpoint(m, s)) for m, s in pipeline.models(config)
                   if s in (ORIGINAL, pipeline.final_stage(config))],
            data=get_data_marker(),
        output:
            video=str(LAYOUT.video("samples")),
            grid=str(LAYOUT.figure("samples_video")),
        params:
            config=config_args,
            cfg=sections("seed", "data", "evaluate", "variants", "baselines"),
            code=code("video"),
        log:
            log("sample_video"),
        threads: 1
        resources:
            mem_mb=config["workflow"]["mem_mb"],
        conda:
            "../envs/unetprune.yaml"
        shell:
            "OMP_NUM_THREADS={threads} unetprune sample-video {params.config:q} > {log:q} 2>&1"
