# Chosen validated points in every export format (the packed reference file, then export.formats),
# each verified.


rule export:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(),
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        validated=f"{RESULTS}/{{net}}/front_validated.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        files=export_files(),
        table=f"{RESULTS}/{{net}}/export.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/export.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/export.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        bound=bound,
        select=config["select"],
        export=config["export"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/export.py"
