"""Rule prepare: baseline accuracy on both splits and the shared-layer table."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
stages.prepare(snakemake.params.model, snakemake.input.data, snakemake.params.evaluation,
               snakemake.output.baseline, snakemake.output.layers)
