"""Rule report: per-network plots and summary row."""
from weight_sharing import job, report

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
o = snakemake.output
report.run(net=snakemake.wildcards.net, category=p.category, bound=p.bound, select=p.select, baseline=i.baseline,
           layers=i.layers, sweeps=list(i.sweeps), surrogate=i.surrogate, predicted=i.predicted, refine=i.refine,
           validated=i.validated, uniform=i.uniform, export=i.export, benchmarks=list(i.benchmarks),
           out_sensitivity=o.sensitivity, out_fronts=o.fronts, out_summary=o.summary)
