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


def sweep_files(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/sweep/{{layer}}.parquet", layer=layer_names(wildcards.net))


def sweep_benchmarks(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/benchmarks/sweep/{{layer}}.tsv", layer=layer_names(wildcards.net))


def sample_shards(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/samples/shard_{{shard}}.parquet",
                  shard=range(config["sample"]["shards"]))


def sample_benchmarks(wildcards):
    return expand(f"{RESULTS}/{wildcards.net}/benchmarks/sample/shard_{{shard}}.tsv",
                  shard=range(config["sample"]["shards"]))


def bound(wildcards):
    return wscfg.network_bound(config, wildcards.net)


EVALUATION = config["evaluation"]
