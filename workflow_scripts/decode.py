"""Rule decode: an image folder decoded once into the evaluation .npz."""
from weight_sharing import decode, job

job.setup(snakemake.log[0], snakemake.threads)
decode.run(model_cfg=snakemake.params.model, data_cfg=snakemake.params.data, out_npz=snakemake.output[0],
           workers=snakemake.threads)
