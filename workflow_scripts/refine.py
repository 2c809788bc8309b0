"""Rule refine: measure the predicted front, refit the surrogate, search again, for a few rounds."""
from weight_sharing import job, refine

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
refine.run(model_cfg=p.model, data_npz=i.data, candidates_parquet=i.candidates, layers_parquet=i.layers,
           sample_files=list(i.samples), surrogate_json=i.surrogate, front_parquet=i.front, baseline_json=i.baseline,
           bound=p.bound, confidence=p.confidence, rounds=p.rounds, search=dict(p.search), evaluation=p.evaluation,
           out_front=snakemake.output.front, out_json=snakemake.output.rounds,
           bias_statistics=job.optional_input(i, "calibration"),
           reestimate_batchnorm=p.correct["bn"])
