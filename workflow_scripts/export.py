"""Rule export: packed files of chosen validated points, verified by reloading."""
from weight_sharing import export, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
export.run(spec=job.evaluation_spec(i, p), candidates=i.candidates, layers=i.layers, validated=i.validated,
           baseline=i.baseline, bound=p.bound, select=p.select, export=p.export, out_files=list(snakemake.output.files),
           out_table=snakemake.output.table)
