"""Rule refine: measure the predicted front, refit the surrogate, search again, for a few rounds."""
from weight_sharing import job, refine

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
refine.run(spec=job.evaluation_spec(i, p), candidates=i.candidates, layers=i.layers, samples=list(i.samples),
           surrogate=i.surrogate, front=i.front, baseline=i.baseline, bound=p.bound, select=p.select,
           refine=p.refine, search=p.search,
           out_front=snakemake.output.front, out_rounds=snakemake.output.rounds,
           out_tensors=snakemake.output.tensors)
