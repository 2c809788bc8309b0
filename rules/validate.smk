# The predicted front on the held-out test split (and on calibration), and the uniform-K reference.


rule validate:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        front=f"{RESULTS}/{{net}}/front_predicted.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/front_validated.parquet",
    params:
        model=model_cfg,
        bound=bound,
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    threads: EVALUATION["threads"]
    resources:
        **EVAL_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/validate.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/validate.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/validate.py"


rule uniform:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        sweeps=sweep_files,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/uniform.parquet",
    params:
        model=model_cfg,
        k_values=wscfg.uniform_k_values(config),
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    threads: EVALUATION["threads"]
    resources:
        **EVAL_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/uniform.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/uniform.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/uniform.py"
