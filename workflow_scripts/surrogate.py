"""Rule surrogate: linear model of network accuracy loss, scored on held-out folds."""
from weight_sharing import job, surrogate

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
surrogate.run(samples=list(i.samples), layers=i.layers, surrogate=p.surrogate, title=snakemake.wildcards.net,
              out_model=snakemake.output.model, out_plot=snakemake.output.plot)
