# The predicted front measured on the calibration and the held-out test split.


rule validate:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(),
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        front=f"{RESULTS}/{{net}}/front_refined.parquet",
        tensors=f"{RESULTS}/{{net}}/front_refined_tensors.safetensors",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/front_validated.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/validate.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/validate.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        bound=bound,
        select=config["select"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/validate.py"
