# Paths and per-network settings shared by the rules.


def net_dir(wildcards):
    return f"{RESULTS}/{wildcards.net}"


def model_cfg(wildcards):
    return wscfg.model_config(RESULTS, wildcards.net, config["networks"][wildcards.net])


def checkpoint_input(wildcards):
    path = wscfg.network_paths(RESULTS, wildcards.net, config["networks"][wildcards.net])["checkpoint"]
    return [path] if path else []


def data_input(wildcards):
    return wscfg.network_paths(RESULTS, wildcards.net, config["networks"][wildcards.net])["npz"]


def layer_names(net):
    return [layer["name"] for layer in LAYERS[net]]


def sweep_chunks(net):
    """Sweep jobs of a network: job name -> its layers (a layer's own name at one layer per job)."""
    names, n = layer_names(net), config["sweep"]["layers_per_job"]
    if n == 1:
        return {name: [name] for name in names}
    return {f"part{i // n:03d}": names[i : i + n] for i in range(0, len(names), n)}


SWEEP_CHUNKS = {net: sweep_chunks(net) for net in NETS}


def sweep_files(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/sweep/{{chunk}}.parquet", chunk=SWEEP_CHUNKS[wildcards.net])


def sweep_benchmarks(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/benchmarks/sweep/{{chunk}}.tsv", chunk=SWEEP_CHUNKS[wildcards.net])


def sample_shards(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/samples/shard_{{shard}}.parquet",
                  shard=range(config["sample"]["shards"]))


def sample_benchmarks(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/benchmarks/sample/shard_{{shard}}.tsv",
                  shard=range(config["sample"]["shards"]))


def bound(wildcards):
    return wscfg.network_bound(config, wildcards.net)


EVALUATION = config["evaluation"]

# What a job needs. Stages that evaluate the network ask for a GPU (the SLURM plugin turns
# gpu=N into --gpus=N; locally it only counts against --resources gpu=N if given); the
# others do not. Cluster-specific settings (partition, account, GPU model) and larger
# memory or time for big networks belong in the profile (profiles/slurm/config.yaml).
EVAL_RESOURCES = dict(gpu=1, mem_mb=4000, runtime=120)
LIGHT_RESOURCES = dict(mem_mb=2000, runtime=30)
