"""Rule validate: the predicted front measured on the calibration and the test split."""
from weight_sharing import job, validate

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
validate.run(spec=job.evaluation_spec(i, p), candidates=i.candidates, layers=i.layers, front=i.front,
             baseline=i.baseline, bound=p.bound, select=p.select, out=snakemake.output[0], tensors=i.tensors)
