# Per-network plots and the network's summary row.


rule report:
    input:
        baseline=f"{RESULTS}/{{net}}/baseline.json",
        layers=f"{RESULTS}/{{net}}/layers.parquet",
        sweeps=sweep_files,
        surrogate=f"{RESULTS}/{{net}}/surrogate.json",
        predicted=f"{RESULTS}/{{net}}/front_refined.parquet",
        refine=f"{RESULTS}/{{net}}/refine.json",
        validated=f"{RESULTS}/{{net}}/front_validated.parquet",
        uniform=f"{RESULTS}/{{net}}/uniform.parquet",
        export=f"{RESULTS}/{{net}}/export.parquet",
        benchmarks=stage_benchmarks,
    output:
        sensitivity=report(
            f"{RESULTS}/{{net}}/report/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Layer sensitivity",
            labels={"network": "{net}"},
        ),
        fronts=report(
            f"{RESULTS}/{{net}}/report/fronts.png",
            caption="../report/fronts.rst",
            category="Fronts",
            labels={"network": "{net}"},
        ),
        summary=f"{RESULTS}/{{net}}/report/summary.json",
    log:
        f"{RESULTS}/{{net}}/logs/report.log",
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        category=lambda wc: config["networks"][wc.net]["category"],
        bound=bound,
        select=config["select"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/report.py"
