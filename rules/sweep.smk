# One job per shared layer (sweep.layers_per_job: 1, the default; the file is named after the
# layer) or per chunk of layers (part000, part001, ...): every K of the grid.


rule sweep:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=sweep_statistics,
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/sweep/{{chunk}}.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/sweep/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/sweep/{{chunk}}.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: THREADS
    resources:
        **EVAL_RESOURCES,
    params:
        model=model_cfg,
        layers=lambda wc: SWEEP_CHUNKS[wc.net][wc.chunk],
        grid=weight_sharing.sweep.resolve_grid(config["sweep"]),
        max_bins=config["sweep"]["max_bins"],
        sharing=config["sharing"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/sweep.py"
