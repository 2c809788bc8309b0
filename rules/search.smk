# The predicted front of (surrogate accuracy loss, exact compression rate): the exact knapsack front
# (search.method: exact) or the paper's NSGA-II (nsga2).


rule search:
    input:
        candidates=f"{RESULTS}/{{net}}/candidates.parquet",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        surrogate=f"{RESULTS}/{{net}}/surrogate.json",
    output:
        f"{RESULTS}/{{net}}/front_predicted.parquet",
    log:
        f"{RESULTS}/{{net}}/logs/search.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/search.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        search=config["search"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/search.py"
