"""Rule summary: the cross-network table (Markdown and CSV)."""
from weight_sharing import job, summary

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
summary.run(summaries=list(i), out_md=snakemake.output.md, out_csv=snakemake.output.csv)
