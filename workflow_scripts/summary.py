"""Rule summary: the cross-network table (Markdown and CSV)."""
from weight_sharing import job, summary

job.setup(snakemake.log[0], snakemake.threads)
summary.run(summary_jsons=list(snakemake.input), out_md=snakemake.output.md, out_csv=snakemake.output.csv)
