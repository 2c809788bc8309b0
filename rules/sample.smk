# Seeded random combinations of candidates, evaluated in shards; the union does not depend on
# the shard count.


rule sample:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(),
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/samples/shard_{{shard}}.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/sample/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/sample/shard_{{shard}}.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        sample=config["sample"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/sample.py"
