rule prepare:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
    output:
        baseline=f"{RESULTS}/{{net}}/baseline.json",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
    params:
        model=model_cfg,
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    threads: EVALUATION["threads"]
    resources:
        **EVAL_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/prepare.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/prepare.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/prepare.py"
