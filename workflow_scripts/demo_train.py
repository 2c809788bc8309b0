"""Rule demo_train: train the built-in LeNet-5 deterministically."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
p = snakemake.params
stages.demo_train(snakemake.input[0], snakemake.output[0], p.epochs, p.batch_size, p.lr, p.seed, p.dropout)
