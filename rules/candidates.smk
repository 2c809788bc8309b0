rule candidates:
    input:
        sweeps=sweep_files,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/candidates.parquet",
    params:
        bound=bound,
        code_version=CODE_VERSION,
    resources:
        **LIGHT_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/candidates.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/candidates.tsv"
    script:
        "../workflow_scripts/candidates.py"
