"""Rule sample: one shard of the seeded random combinations, evaluated."""
from weight_sharing import job, sample

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
sample.run(spec=job.evaluation_spec(i, p), candidates=i.candidates, layers=i.layers, baseline=i.baseline,
           sample=p.sample, shard=int(snakemake.wildcards.shard), out=snakemake.output[0])
