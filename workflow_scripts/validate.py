"""Rule validate: the predicted front measured on the calibration and the test split."""
from weight_sharing import job, validate

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
validate.run(model_cfg=p.model, data_npz=i.data, candidates_parquet=i.candidates, layers_parquet=i.layers,
             front_parquet=i.front, baseline_json=i.baseline, bound=p.bound, confidence=p.select["confidence"], evaluation=p.evaluation,
             out=snakemake.output[0], bias_statistics=job.optional_input(i, "calibration"),
           reestimate_batchnorm=p.correct["bn"], selection=p.select["split"])
