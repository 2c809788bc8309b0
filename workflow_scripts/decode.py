"""Rule decode: an image folder decoded once into the evaluation .npz."""
from weight_sharing import decode, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
decode.run(model=p.model, data=p.data, out=snakemake.output[0], workers=snakemake.threads)
