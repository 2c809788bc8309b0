# Paths and per-network settings shared by the rules.


def model_cfg(wildcards):
    return wscfg.model_config(RESULTS, wildcards.net, config["networks"][wildcards.net])


def checkpoint_input(wildcards):
    path = wscfg.network_paths(RESULTS, wildcards.net, config["networks"][wildcards.net])[
        "checkpoint"
    ]
    return [path] if path else []


def demo_init_input(wildcards):
    """The pretrained weights a demo network is fine-tuned from, if any."""
    path = wscfg.network_paths(RESULTS, wildcards.net, config["networks"][wildcards.net])["init"]
    return [path] if path else []


def data_input(wildcards):
    return wscfg.network_paths(RESULTS, wildcards.net, config["networks"][wildcards.net])["npz"]


def calibration_statistics(refit=False):
    """Input function: the calibration statistics file, for a stage whose corrections read any
    (the plan's, from weight_sharing.correct.needed_statistics; ``refit``: the sweep, which also
    refits centroids)."""

    def statistics(wildcards):
        if PLAN["statistics"]["refit" if refit else "evaluation"]:
            return [f"{RESULTS}/{wildcards.net}/calibration.safetensors"]
        return []

    return statistics


def export_files():
    """The export stage's files: per export target, the packed file, then each of export.formats
    (a Core ML package is a folder)."""
    files = []
    for target in config["export"]["targets"]:
        for fmt in wsformats.export_formats(config["export"]["formats"]):
            path = f"{RESULTS}/{{net}}/export/{wsformats.output_name(target, fmt)}"
            files.append(directory(path) if fmt.directory else path)
    return files


def sweep_chunks(net):
    """Sweep jobs of a network: job name -> its layers (a layer's own name at one layer per job)."""
    names, n = [layer["name"] for layer in LAYERS[net]], config["sweep"]["layers_per_job"]
    if n == 1:
        return {name: [name] for name in names}
    return {f"part{i // n:03d}": names[i : i + n] for i in range(0, len(names), n)}


SWEEP_CHUNKS = {net: sweep_chunks(net) for net in NETS}


def sweep_files(wildcards):
    return expand(
        f"{RESULTS}/{wildcards.net}/sweep/{{chunk}}.parquet",
        chunk=SWEEP_CHUNKS[wildcards.net],
    )


def sample_files(wildcards):
    return expand(
        f"{RESULTS}/{wildcards.net}/samples/shard_{{shard}}.parquet",
        shard=range(config["sample"]["shards"]),
    )


def stage_benchmarks(wildcards):
    """The benchmark file of every job of every timed stage (weight_sharing.job.STAGES)."""
    jobs = {
        "sweep": SWEEP_CHUNKS[wildcards.net],
        "sample": [f"shard_{i}" for i in range(config["sample"]["shards"])],
    }
    files = []
    for stage in wsjob.STAGES:
        if stage == "calibration" and not calibration_statistics(refit=True)(wildcards):
            continue  # no stage reads calibration statistics: the stage does not run
        if stage in jobs:
            files += [
                f"{RESULTS}/{wildcards.net}/benchmarks/{stage}/{job}.tsv" for job in jobs[stage]
            ]
        else:
            files.append(f"{RESULTS}/{wildcards.net}/benchmarks/{stage}.tsv")
    return files


def bound(wildcards):
    return wscfg.network_bound(config, wildcards.net)


EVALUATION = wscfg.evaluation_params(config)
THREADS = config["evaluation"]["threads"]

# What a job needs. Stages that evaluate the network ask for a GPU (the SLURM plugin turns
# gpu=N into --gpus=N; locally it only counts against --resources gpu=N if given); the
# others do not. mem_mb of the evaluation jobs grows with the data: the splits are read from
# the file in batches (through the page cache), so a job holds one batch, the model and its
# outputs; cluster-specific settings (partition, account, GPU model) belong in the profile.
LIGHT_RESOURCES = dict(mem_mb=2000, runtime=30)


def eval_mem_mb(wildcards, input):
    """4 GB plus a quarter of the evaluation data (batches, page cache pressure, reference outputs)."""
    data = [f for f in input if str(f).endswith(".npz")]
    size_mb = sum(os.path.getsize(f) for f in data if os.path.exists(f)) / 1e6
    return int(4000 + size_mb / 4)


EVAL_RESOURCES = dict(gpu=1, mem_mb=eval_mem_mb, runtime=120)
