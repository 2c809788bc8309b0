# One row per network, as Markdown and CSV.


rule summary:
    input:
        expand(f"{RESULTS}/{{net}}/report/summary.json", net=NETS),
    output:
        md=f"{RESULTS}/summary.md",
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/summary.py"
