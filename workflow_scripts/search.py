"""Rule search: the predicted front of (surrogate AL, CR)."""
from weight_sharing import job, search

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
search.run(candidates=i.candidates, layers=i.layers, surrogate=i.surrogate, search=p.search, out=snakemake.output[0])
