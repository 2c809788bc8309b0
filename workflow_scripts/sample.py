"""Rule sample: one shard of the seeded random combinations, evaluated."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
p = snakemake.params
stages.sample(p.model, snakemake.input.data, snakemake.input.candidates, snakemake.input.layers,
              snakemake.input.baseline, p.n, p.seed, p.shards, int(snakemake.wildcards.shard),
              p.evaluation, snakemake.output[0])
