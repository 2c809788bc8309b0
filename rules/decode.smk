# An image folder (e.g. the ImageNet validation set) decoded once with the model's own
# preprocessing: every later evaluation reads uint8 arrays, never a JPEG.


rule decode:
    input:
        checkpoint=checkpoint_input,
    output:
        f"{RESULTS}/{{net}}/data.npz",
    log:
        f"{RESULTS}/{{net}}/logs/decode.log",
    benchmark:
        f"{RESULTS}/{{net}}/benchmarks/decode.tsv"
    conda:
        "../envs/weight_sharing.yaml"
    threads: 8
    resources:
        mem_mb=32000,
        runtime=240,
    params:
        model=model_cfg,
        data=lambda wc: config["networks"][wc.net]["data"],
        code_version=CODE_VERSION,
    script:
        "../workflow_scripts/decode.py"
