# Retraining-free weight-sharing exploration (ASP-DAC 2022), one results folder per network.
# Rules only wire files, params and resources; the library weight_sharing does the work.
import re

import weight_sharing
import weight_sharing.sweep
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate
from weight_sharing import config as wscfg

min_version("9.0")


# config.yaml is the default; a --configfile replaces it rather than being merged into it
if not config:

    configfile: "config.yaml"


validate(config, wscfg.SCHEMA_PATH)
if workflow.remote_exec:
    # a job on a cluster node: the submitting process checked everything already
    LAYERS = wscfg.architecture_layers(config)
else:
    try:
        LAYERS = wscfg.check_config(config)
    except (wscfg.ConfigError, FileNotFoundError) as exc:
        raise WorkflowError(f"invalid configuration: {exc}")

RESULTS = config["results"]
NETS = list(config["networks"])
CODE_VERSION = weight_sharing.__version__


wildcard_constraints:
    net="|".join(map(re.escape, NETS)),
    chunk="[^/]+",
    shard="[0-9]+",


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/prepare.smk"
include: "rules/sweep.smk"
include: "rules/candidates.smk"
include: "rules/sample.smk"
include: "rules/surrogate.smk"
include: "rules/search.smk"
include: "rules/validate.smk"
include: "rules/export.smk"
include: "rules/report.smk"

# Stages that take seconds run on the submitting host even under a cluster executor:
# queueing them would cost more than running them.
localrules:
    all,
    demo_data,
    candidates,
    merge_samples,
    surrogate,
    report,
    summary,


rule all:
    default_target: True
    input:
        f"{RESULTS}/summary.md",
        f"{RESULTS}/summary.csv",
