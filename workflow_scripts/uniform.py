"""Rule uniform: every layer the same K, the reference to beat."""
from weight_sharing import job, uniform

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
uniform.run(spec=job.evaluation_spec(i, p), sweeps=list(i.sweeps), layers=i.layers, baseline=i.baseline,
            k_values=list(p.k_values), selection=p.selection, out=snakemake.output[0])
