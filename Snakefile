# Retraining-free weight-sharing exploration (ASP-DAC 2022), one results folder per network.
# Rules only wire files, params and resources; the library weight_sharing does the work.
import os
import re

import weight_sharing
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate
from weight_sharing import config as wscfg
from weight_sharing import formats as wsformats
from weight_sharing import grid as wsgrid
from weight_sharing import job as wsjob

min_version("9.0")


# config.yaml is the default; a --configfile replaces it rather than being merged into it,
# while --config key=value overrides keys of whichever file is used
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate(config, wscfg.SCHEMA_PATH)
# what the rules need (each network's shared layers, which stages read calibration statistics),
# checked before any job; kept under .snakemake/ while nothing it is made from changes, so a parse
# then builds no model and imports no torch (a job on a cluster node: from the architectures alone,
# the submitting process checked everything already)
try:
    PLAN = wscfg.workflow_plan(config, remote=workflow.remote_exec)
except (wscfg.ConfigError, FileNotFoundError) as exc:
    raise WorkflowError(f"invalid configuration: {exc}")
LAYERS = PLAN["layers"]

# jobs run in conda environments (--sdm conda) import the library from this repository
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p)
)

RESULTS = config["results"]
NETS = list(config["networks"])
CODE_VERSION = weight_sharing.__version__


wildcard_constraints:
    net="|".join(map(re.escape, NETS)),
    chunk="[^/]+",
    shard="[0-9]+",


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/decode.smk"
include: "rules/prepare.smk"
include: "rules/calibration.smk"
include: "rules/sweep.smk"
include: "rules/candidates.smk"
include: "rules/sample.smk"
include: "rules/surrogate.smk"
include: "rules/search.smk"
include: "rules/refine.smk"
include: "rules/validate.smk"
include: "rules/uniform.smk"
include: "rules/export.smk"
include: "rules/report.smk"
include: "rules/summary.smk"


# Stages that take seconds run on the submitting host even under a cluster executor:
# queueing them would cost more than running them.
localrules:
    all,
    candidates,
    surrogate,
    report,
    summary,


rule all:
    default_target: True
    input:
        f"{RESULTS}/summary.md",
        f"{RESULTS}/summary.csv",
