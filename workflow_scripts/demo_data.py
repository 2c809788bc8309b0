"""Rule demo_data: the shipped MNIST digits as the demo's evaluation .npz."""
from weight_sharing import stages

stages.setup_logging(snakemake.log[0])
p = snakemake.params
stages.demo_data(snakemake.output[0], p.n_train, p.n_calib, p.n_test, p.seed)
