"""Rule candidates: per layer and bit-width, the best K within the bound."""
from weight_sharing import candidates, job

job.setup(snakemake.log[0], snakemake.threads)
candidates.run(sweep_files=list(snakemake.input.sweeps), layers_parquet=snakemake.input.layers,
               baseline_json=snakemake.input.baseline, bound=snakemake.params.bound,
               signal=snakemake.params.signal, out=snakemake.output[0])
