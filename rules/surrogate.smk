# Linear model of network accuracy loss on per-layer features, scored on held-out folds.


rule surrogate:
    input:
        samples=sample_files,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
    output:
        model=f"{RESULTS}/{{net}}/surrogate.json",
        plot=report(
            f"{RESULTS}/{{net}}/surrogate.png",
            caption="../report/surrogate.rst",
            category="Surrogate fit",
            labels={"network": "{net}"},
        ),
    log:
        f"{RESULTS}/{{net}}/logs/surrogate.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/surrogate.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        surrogate=config["surrogate"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/surrogate.py"
