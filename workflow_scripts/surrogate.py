"""Rule surrogate: linear regression of network AL on per-layer AL, scored on held-out folds."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
p = snakemake.params
stages.surrogate(snakemake.input.samples, snakemake.input.layers, p.features, p.positive, p.folds, p.seed,
                 snakemake.output.model, snakemake.output.plot, title=snakemake.wildcards.net)
