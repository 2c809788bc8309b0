# NSGA-II on (predicted accuracy loss, exact compression rate).


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
        method=config["search"]["method"],
        max_points=config["search"]["max_points"],
        pop_size=config["search"]["pop_size"],
        generations=config["search"]["generations"],
        seed=config["search"]["seed"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/search.py"
