"""Rule merge_samples: the shards as one table, in draw order."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.merge_samples(list(snakemake.input), snakemake.output[0])
