"""Rule candidates: per layer and bit-width, the best K within the bound."""
from weight_sharing import candidates, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
candidates.run(sweeps=list(i.sweeps), layers=i.layers, baseline=i.baseline, bound=p.bound, candidates=p.candidates,
               out=snakemake.output[0])
