# The validated config (defaults filled in) that every job reads: written by a job, under
# Snakemake's lock, never while the Snakefile is parsed (a refused or dry run writes nothing).

rule resolve_config:
    output:
        str(LAYOUT.config_file),
    params:
        cfg=lambda wc: json.dumps(config, sort_keys=True),
        code=code_of("unetprune.config"),
    log:
        log("resolve_config"),
    localrule: True
    run:
        # the validated config, written by a job (under Snakemake's lock), never at parse time
        from unetprune.config import write_resolved

        write_resolved(config, output[0])
