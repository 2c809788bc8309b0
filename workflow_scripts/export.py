"""Rule export: packed files of chosen validated points, verified by reloading."""
from weight_sharing import export, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
export.run(model_cfg=p.model, data_npz=i.data, candidates_parquet=i.candidates, layers_parquet=i.layers,
           validated_parquet=i.validated, baseline_json=i.baseline, bound=p.bound, confidence=p.select["confidence"], targets=p.targets,
           evaluation=p.evaluation, out_files=list(snakemake.output.files), out_table=snakemake.output.table,
           bias_statistics=job.optional_input(i, "calibration"),
           reestimate_batchnorm=p.correct["bn"], selection=p.select["split"])
