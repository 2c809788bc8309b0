"""Rule candidates: per layer and bit-width, the best K within the bound."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.candidates(list(snakemake.input.sweeps), snakemake.input.layers, snakemake.input.baseline,
                  snakemake.params.bound, snakemake.output[0])
