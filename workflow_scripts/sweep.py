"""Rule sweep: one layer (or a chunk of layers), every K of the grid."""
from weight_sharing import job, sweep

p = snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
sweep.run(model_cfg=p.model, data_npz=snakemake.input.data, baseline_json=snakemake.input.baseline,
          layers=list(p.layers), grid=p.grid, max_bins=p.max_bins, evaluation=p.evaluation,
          out=snakemake.output[0], workers=snakemake.threads, sharing=dict(p.sharing), correct=dict(p.correct),
          calibration=job.optional_input(snakemake.input, "calibration"))
