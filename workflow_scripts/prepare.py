"""Rule prepare: baseline accuracy on both splits and the shared-layer table."""
from weight_sharing import job, prepare

job.setup(snakemake.log[0], snakemake.threads)
prepare.run(model_cfg=snakemake.params.model, data_npz=snakemake.input.data, evaluation=snakemake.params.evaluation,
            out_baseline=snakemake.output.baseline, out_layers=snakemake.output.layers)
