"""Rule prepare: baseline accuracy on both splits and the shared-layer table."""
from weight_sharing import job, prepare

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
prepare.run(spec=job.evaluation_spec(i, p), out_baseline=snakemake.output.baseline, out_layers=snakemake.output.layers)
