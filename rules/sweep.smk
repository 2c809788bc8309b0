# One job per chunk of sweep.layers_per_job shared layers (part000, part001, ...; at 1, a job per
# layer, its file named after the layer): every K of the grid.


rule sweep:
    input:
        checkpoint=checkpoint_input,
        data=data_input,
        calibration=calibration_statistics(refit=True),
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
        sweep=config["sweep"],
        sharing=config["sharing"],
        correct=config["correct"],
        evaluation=EVALUATION,
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/sweep.py"
