"""The tiny config submitted through profiles/slurm to a real SLURM cluster (.ci/run starts a one-node one)."""
import re
import shutil
import subprocess

import pytest

from workflow_utils import REPO, TINY, result_tables, snakemake, write_config

GPU_STAGES = {"prepare", "sweep", "sample", "refine", "validate", "uniform", "export"}
CLUSTER_STAGES = GPU_STAGES | {"demo", "search"}


def slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not slurm_up(), reason="no SLURM controller answers (.ci/run starts one)")


def finished_jobs() -> list[dict]:
    """Jobs the controller still remembers (MinJobAge), as dicts of scontrol fields."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        if fields:
            jobs.append(fields)
    return jobs


def test_slurm_run_matches_local_run(tiny_run, tmp_path):
    write_config(tmp_path, TINY)
    before = {j["JobId"] for j in finished_jobs()}
    proc = snakemake(tmp_path, "--profile", str(REPO / "profiles/slurm"), "--jobs", "6",
                     "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = [j for j in finished_jobs() if j["JobId"] not in before and j.get("WorkDir") == str(tmp_path)]
    by_rule = {}
    for j in jobs:
        rule = re.match(r"rule_(\w+?)_wildcards", j.get("Comment", "")).group(1)
        by_rule.setdefault(rule, []).append(j)
        assert j["JobState"] == "COMPLETED", j
    print("SLURM jobs:", {r: [j["JobId"] for j in js] for r, js in sorted(by_rule.items())})
    assert set(by_rule) == CLUSTER_STAGES
    assert len(by_rule["sweep"]) == 5 and len(by_rule["sample"]) == 2
    for rule, js in by_rule.items():
        for j in js:
            asks_gpu = "gpu" in j.get("TresPerJob", "") or "gpu" in j.get("TresPerNode", "")
            assert asks_gpu == (rule in GPU_STAGES), (rule, j.get("TresPerJob"))
            if rule in GPU_STAGES:
                assert j["Partition"] == "gpu"
    assert result_tables(tmp_path) == result_tables(tiny_run)
