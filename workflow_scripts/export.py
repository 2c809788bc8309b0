"""Rule export: packed files of chosen validated points, verified by reloading."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
i, p = snakemake.input, snakemake.params
stages.export(p.model, i.data, i.candidates, i.layers, i.validated, i.baseline, p.bound, p.targets,
              p.evaluation, list(snakemake.output.files), snakemake.output.table)
