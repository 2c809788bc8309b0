"""Rule sweep: one layer (or a chunk of layers), every K of the grid."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
p = snakemake.params
stages.sweep(p.model, snakemake.input.data, snakemake.input.baseline, list(p.layers),
             p.grid, p.max_bins, p.evaluation, snakemake.output[0], workers=snakemake.threads)
