"""Rule uniform: every layer the same K (per tensor, per group of channels), the references to beat."""
from weight_sharing import job, uniform

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
uniform.run(spec=job.evaluation_spec(i, p), sweeps=list(i.sweeps), layers=i.layers, baseline=i.baseline,
            k_values=list(p.k_values), group=p.group,
            max_bins=p.max_bins, selection=p.selection, out=snakemake.output[0])
