"""Rule decode_data: an image folder decoded once into the evaluation .npz."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.decode_data(snakemake.params.model, snakemake.params.data, snakemake.output[0], snakemake.threads)
