"""Rule summary: the cross-network table (Markdown and CSV)."""
from weight_sharing import report, stages

stages.setup_logging(snakemake.log[0])
report.write_summary(list(snakemake.input), snakemake.output.md, snakemake.output.csv)
