"""Rule calibration: input statistics of every shared layer (bias correction, data-aware centroids)."""
from weight_sharing import calibration, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
calibration.run(model_cfg=p.model, data_npz=i.data, layers_parquet=i.layers, second_moment=p.second_moment,
                evaluation=p.evaluation, out=snakemake.output[0])
