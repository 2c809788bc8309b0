"""Rule validate: the predicted front measured on the test (and calibration) split."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
stages.set_threads(snakemake.threads)
i, p = snakemake.input, snakemake.params
stages.validate(p.model, i.data, i.candidates, i.layers, i.front, i.baseline, p.bound, p.evaluation,
                snakemake.output[0])
