"""Rule search: NSGA-II on (predicted AL, CR)."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
p = snakemake.params
stages.search(snakemake.input.candidates, snakemake.input.layers, snakemake.input.surrogate,
              p.pop_size, p.generations, p.seed, snakemake.output[0])
