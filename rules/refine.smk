# Rounds of: measure the predicted front on calibration, refit the surrogate, search again.


rule refine:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(),
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        samples=sample_files,
        surrogate=f"{RESULTS}/{{net}}/surrogate.json",
        front=f"{RESULTS}/{{net}}/front_predicted.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        front=f"{RESULTS}/{{net}}/front_refined.parquet",
        rounds=f"{RESULTS}/{{net}}/refine.json",
        tensors=f"{RESULTS}/{{net}}/front_refined_tensors.safetensors",
    log:
        f"{RESULTS}/{{net}}/logs/refine.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/refine.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        bound=bound,
        select=config["select"],
        refine=config["refine"],
        search=config["search"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/refine.py"
