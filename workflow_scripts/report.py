"""Rule report: per-network plots and summary row."""
from weight_sharing import report, stages

stages.setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
benchmarks = {"prepare": [i.bench_prepare], "sweep": list(i.bench_sweep), "candidates": [i.bench_candidates],
              "sample": list(i.bench_sample), "surrogate": [i.bench_surrogate], "search": [i.bench_search],
              "validate": [i.bench_validate], "uniform": [i.bench_uniform], "export": [i.bench_export]}
report.network_report(snakemake.wildcards.net, p.category, p.bound, i.baseline, i.layers, list(i.sweeps),
                      i.surrogate, i.predicted, i.validated, i.uniform, i.export, benchmarks,
                      o.sensitivity, o.fronts, o.summary)
