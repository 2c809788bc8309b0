"""Rule report: per-network plots and summary row."""
from weight_sharing import job, report

i, o, p = snakemake.input, snakemake.output, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
report.run(net=snakemake.wildcards.net, category=p.category, bound=p.bound, confidence=p.select["confidence"], baseline_json=i.baseline,
           layers_parquet=i.layers, sweep_files=list(i.sweeps), surrogate_json=i.surrogate,
           predicted_parquet=i.predicted, refine_json=i.refine, validated_parquet=i.validated, uniform_parquet=i.uniform,
           export_parquet=i.export, benchmark_files=list(i.benchmarks), out_sensitivity=o.sensitivity,
           out_fronts=o.fronts, out_summary=o.summary, selection=p.select["split"])
