# Input statistics of every shared layer on the calibration images, for the corrections
# (correct.bias, correct.centroids: weight_sharing.correct.needed_statistics), and the form that
# correct.bn: auto takes for the network (decided here, once); not run when no stage reads them.


rule calibration:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
    output:
        f"{RESULTS}/{{net}}/calibration.safetensors",
    log:
        f"{RESULTS}/{{net}}/logs/calibration.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/calibration.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        evaluation=EVALUATION,
        correct=config["correct"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/calibration.py"
