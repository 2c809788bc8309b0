"""Rule uniform: every layer the same K, the reference to beat."""
from weight_sharing import job, uniform

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
uniform.run(model_cfg=p.model, data_npz=i.data, sweep_files=list(i.sweeps), layers_parquet=i.layers,
            baseline_json=i.baseline, k_values=p.k_values, evaluation=p.evaluation, out=snakemake.output[0],
            bias_statistics=job.optional_input(i, "calibration"),
           reestimate_batchnorm=p.correct["bn"], selection=p.selection)
