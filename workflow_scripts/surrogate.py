"""Rule surrogate: linear model of network accuracy loss, scored on held-out folds."""
from weight_sharing import job, surrogate

p = snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
surrogate.run(sample_files=list(snakemake.input.samples), layers_parquet=snakemake.input.layers,
              features=list(p.features), positive=p.positive, folds=p.folds, seed=p.seed,
              out_json=snakemake.output.model, out_png=snakemake.output.plot, title=snakemake.wildcards.net)
