# Per layer and index bit-width, the K that loses least while meeting the bound.


rule candidates:
    input:
        sweeps=sweep_files,
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        baseline=f"{RESULTS}/{{net}}/baseline.json",
    output:
        f"{RESULTS}/{{net}}/candidates.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/candidates.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/candidates.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        bound=bound,
        candidates=config["candidates"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/candidates.py"
