"""Rule calibration: input statistics of every shared layer (bias correction, centroid refit)."""
from weight_sharing import calibration, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
calibration.run(spec=job.evaluation_spec(i, p), layers=i.layers, correct=p.correct, out=snakemake.output[0])
