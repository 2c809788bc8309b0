"""Rule sample: one shard of the seeded random combinations, evaluated."""
from weight_sharing import job, sample

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
sample.run(model_cfg=p.model, data_npz=i.data, candidates_parquet=i.candidates, layers_parquet=i.layers,
           baseline_json=i.baseline, n=p.n, seed=p.seed, shards=p.shards, shard=int(snakemake.wildcards.shard),
           evaluation=p.evaluation, out=snakemake.output[0],
           bias_statistics=job.optional_input(i, "calibration"),
           reestimate_batchnorm=p.correct["bn"])
