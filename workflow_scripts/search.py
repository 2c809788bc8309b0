"""Rule search: NSGA-II on (predicted AL, CR)."""
from weight_sharing import job, search

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
search.run(candidates_parquet=i.candidates, layers_parquet=i.layers, surrogate_json=i.surrogate,
           method=p.method, max_points=p.max_points, pop_size=p.pop_size, generations=p.generations, seed=p.seed, out=snakemake.output[0])
