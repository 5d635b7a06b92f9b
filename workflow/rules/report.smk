# The paper's tables and figures, report.md and the DVC metrics/plots files, from the
# JSON files of every run.  The figures, tables and sample grids are flagged for
# `snakemake --report report.html` (captions in workflow/report/, one category per phase).

_FINAL_STAGE = pipeline.final_stage(config)
_TRAIN, _SENS, _PRUNE = "1. Training", "2. Sensitivity", "3. Pruning vs baselines"
_SAMPLES, _REPORT = "4. Samples", "5. Report"
# file -> (caption in workflow/report/, category, subcategory, labels): flagged for the report
_REPORTED = {
    LAYOUT.figure("learning_curve"): ("learning_curve", _TRAIN, "figure",
                                      {"what": "figure", "name": "learning curve of the original"}),
    LAYOUT.figure("sensitivity"): ("sensitivity_figure", _SENS, "figure",
                                   {"what": "figure", "name": "per-layer sensitivity"}),
    LAYOUT.table("sensitivity"): ("sensitivity_table", _SENS, "tables",
                                  {"what": "table", "name": "sensitivity per layer and ratio"}),
    LAYOUT.table("sensitivity_matrix"): ("sensitivity_matrix", _SENS, "tables",
                                         {"what": "table", "name": "sensitivity matrix (layer x ratio)"}),
    LAYOUT.table("sensitivity_summary"): ("sensitivity_summary", _SENS, "tables",
                                          {"what": "table", "name": "inner vs outer degradation"}),
    LAYOUT.figure("tradeoff"): ("tradeoff_figure", _PRUNE, "figure", {"what": "figure", "name": "quality vs size"}),
    LAYOUT.table("main"): ("main_table", _PRUNE, "tables", {"what": "table", "name": "main table"}),
    LAYOUT.table("comparison"): ("comparison_table", _PRUNE, "tables",
                                 {"what": "table", "name": "variants vs matched baselines"}),
    LAYOUT.figure("samples"): ("samples", _SAMPLES, _FINAL_STAGE, {"what": "sample grid", "stage": _FINAL_STAGE}),
    LAYOUT.report_md: ("report_md", _REPORT, None, {"what": "report", "name": LAYOUT.report_md.name}),
}
if _FINAL_STAGE != PRUNED:
    _REPORTED[LAYOUT.figure("samples_pruned")] = ("samples_pruned", _SAMPLES, PRUNED,
                                                  {"what": "sample grid", "stage": PRUNED})
# every file the report job writes: the layout's report outputs (the workflow's targets) first,
# then the other tables and figures; the reportable ones flagged for `snakemake --report`
_flag_for_report = report  # Snakemake's report() flag (the name alone at a line start is the directive)
_REPORT_OUTPUTS = [
    str(path) if spec is None else _flag_for_report(
        str(path), caption=f"../report/{spec[0]}.rst", category=spec[1], subcategory=spec[2], labels=spec[3])
    for path, spec in [(p, _REPORTED.get(p)) for p in LAYOUT.report_outputs()]
    + [(p, s) for p, s in _REPORTED.items() if p not in LAYOUT.report_outputs()]
]


rule report:
    input:
        evals=get_eval_files(),
        sensitivity=[str(LAYOUT.sensitivity_json(layer)) for layer in get_layers()],
        original=str(LAYOUT.train_log(ORIGINAL)),
    output:
        _REPORT_OUTPUTS,
    params:
        config=config_args,
        cfg=sections("experiment", "report", "variants", "baselines", "sensitivity", "finetune", "evaluate"),
        code=code("report"),
    log:
        log("report"),
    threads: 1
    resources:
        mem_mb=config["workflow"]["mem_mb"],
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} unetprune report {params.config:q} > {log:q} 2>&1"
