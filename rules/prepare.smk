# Baseline accuracy on both splits and the table of shared layers.


rule prepare:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
    output:
        baseline=f"{RESULTS}/{{net}}/baseline.json",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/prepare.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/prepare.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/prepare.py"
