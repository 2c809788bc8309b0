rule report:
    input:
        baseline=f"{RESULTS}/{{net}}/baseline.json",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        sweeps=sweep_files,
        surrogate=f"{RESULTS}/{{net}}/surrogate.json",
        predicted=f"{RESULTS}/{{net}}/front_predicted.parquet",
        validated=f"{RESULTS}/{{net}}/front_validated.parquet",
        uniform=f"{RESULTS}/{{net}}/uniform.parquet",
        export=f"{RESULTS}/{{net}}/export.parquet",
        bench_prepare=f"{RESULTS}/{{net}}/benchmarks/prepare.tsv",
        bench_sweep=sweep_benchmarks,
        bench_candidates=f"{RESULTS}/{{net}}/benchmarks/candidates.tsv",
        bench_sample=sample_benchmarks,
        bench_surrogate=f"{RESULTS}/{{net}}/benchmarks/surrogate.tsv",
        bench_search=f"{RESULTS}/{{net}}/benchmarks/search.tsv",
        bench_validate=f"{RESULTS}/{{net}}/benchmarks/validate.tsv",
        bench_uniform=f"{RESULTS}/{{net}}/benchmarks/uniform.tsv",
        bench_export=f"{RESULTS}/{{net}}/benchmarks/export.tsv",
    output:
        sensitivity=f"{RESULTS}/{{net}}/report/sensitivity.png",
        fronts=f"{RESULTS}/{{net}}/report/fronts.png",
        summary=f"{RESULTS}/{{net}}/report/summary.json",
    params:
        category=lambda wc: config["networks"][wc.net]["category"],
        bound=bound,
        code_version=CODE_VERSION,
    resources:
        **LIGHT_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/report.log",
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/report.py"


rule summary:
    input:
        expand(f"{RESULTS}/{{net}}/report/summary.json", net=NETS),
    output:
        md=f"{RESULTS}/summary.md",
        csv=f"{RESULTS}/summary.csv",
    params:
        code_version=CODE_VERSION,
    resources:
        **LIGHT_RESOURCES,
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/summary.py"
