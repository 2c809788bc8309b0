# The references to beat: every layer the same K, per tensor and per group of channels, on both splits.


rule uniform:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(),
        sweeps=sweep_files,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/uniform.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/uniform.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/uniform.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        k_values=wsgrid.uniform_k_values(config["sweep"], config["uniform"]),
        group=config["sharing"]["group"],
        max_bins=config["sweep"]["max_bins"],
        selection=config["select"]["split"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/uniform.py"
