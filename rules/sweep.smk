# One job per shared layer: every K of the grid, one Parquet file per layer.


rule sweep:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/sweep/{{layer}}.parquet",
    params:
        model=model_cfg,
        grid=weight_sharing.sweep.resolve_grid(config["sweep"]),
        max_bins=config["sweep"]["max_bins"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    threads: EVALUATION["threads"]
    log:
        f"{RESULTS}/{{net}}/logs/sweep/{{layer}}.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/sweep/{{layer}}.tsv"
    script:
        "../workflow_scripts/sweep.py"
