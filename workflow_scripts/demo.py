"""Rule demo: the shipped MNIST digits split, and LeNet-5 trained on them deterministically."""
from weight_sharing import demo, job

p = snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
demo.run(model_cfg=p.model, n_train=p.n_train, n_calib=p.n_calib, n_test=p.n_test, n_select=p.n_select, split_seed=p.split_seed, epochs=p.epochs,
         batch_size=p.batch_size, lr=p.lr, seed=p.seed, dropout=p.dropout, out_data=snakemake.output.data,
         out_checkpoint=snakemake.output.checkpoint)
