"""Rule sweep: one chunk of layers, every K of the grid."""
from weight_sharing import job, sweep

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
sweep.run(spec=job.evaluation_spec(i, p), baseline=i.baseline, layers=list(p.layers), sweep=p.sweep, sharing=p.sharing,
          out=snakemake.output[0], workers=snakemake.threads)
