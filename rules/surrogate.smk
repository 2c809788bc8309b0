rule surrogate:
    input:
        samples=f"{RESULTS}/{{net}}/samples.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
    output:
        model=f"{RESULTS}/{{net}}/surrogate.json",
        plot=f"{RESULTS}/{{net}}/surrogate.png",
    params:
        folds=config["surrogate"]["folds"],
        seed=config["surrogate"]["seed"],
        code_version=CODE_VERSION,
    log:
        f"{RESULTS}/{{net}}/logs/surrogate.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/surrogate.tsv"
    script:
        "../workflow_scripts/surrogate.py"
