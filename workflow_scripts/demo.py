"""Rule demo: the shipped MNIST digits split, and a network trained on them deterministically."""
from weight_sharing import demo, job

i, p = snakemake.input, snakemake.params
job.setup(snakemake.log[0], snakemake.threads)
demo.run(
    model=p.model,
    demo=p.demo,
    init=i.init[0] if i.init else None,
    out_data=snakemake.output.data,
    out_checkpoint=snakemake.output.checkpoint,
)
