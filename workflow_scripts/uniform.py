"""Rule uniform: every layer the same K, the reference to beat."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
i, p = snakemake.input, snakemake.params
stages.uniform(p.model, i.data, list(i.sweeps), i.layers, i.baseline, p.k_values, p.evaluation,
               snakemake.output[0])
