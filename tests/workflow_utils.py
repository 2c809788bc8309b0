"""Helpers to run the Snakemake workflow on tiny configs from the tests."""
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

CONFIGS = REPO / "tests" / "configs"
TINY = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_cmd(workdir: Path, *args: str, configfile: str | None = "config.yaml") -> list[str]:
    """snakemake on the repository's Snakefile in ``workdir`` (with ``configfile`` from it, unless None)."""
    config = ["--configfile", str(workdir / configfile)] if configfile else []
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *config, *args]


def snakemake(workdir: Path, *args: str, timeout: int = 900, configfile: str = "config.yaml"
              ) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in ``workdir`` with its config file."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(["timeout", "-k", "10", str(timeout), *snakemake_cmd(workdir, *args, configfile=configfile)],
                          capture_output=True, text=True, env=env)


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table Snakemake prints (dry runs included)."""
    jobs, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts or parts[0] == "total":
                if parts:
                    break
                continue
            if len(parts) >= 2 and parts[1].isdigit():
                jobs[parts[0]] = int(parts[1])
    return jobs


TIMING_COLUMNS = {"seconds"}


def result_tables(workdir: Path, net: str = "tiny") -> dict[str, object]:
    """Every result table of a run (timing columns dropped), for run-to-run comparisons."""
    import json

    import pyarrow.parquet as pq

    root = workdir / "results" / net
    out = {}
    for path in sorted(root.rglob("*.parquet")):
        if "benchmarks" in path.parts:
            continue
        table = pq.read_table(path)
        keep = [c for c in table.column_names if c not in TIMING_COLUMNS]
        out[str(path.relative_to(root))] = table.select(keep).to_pylist()
    for name in ("baseline.json", "surrogate.json"):
        out[name] = json.loads((root / name).read_text())
    return out


def cr_by_hand(weights, ks, groups=None) -> float:
    """The CR formula written out here, not taken from the library under test: 32-bit weights over
    ceil(log2 K)-bit indices plus each layer's codebooks of K 32-bit values."""
    groups = groups if groups is not None else [1] * len(ks)
    shared = sum(w * (math.ceil(math.log2(k)) if k > 1 else 0) + g * k * 32 for w, k, g in zip(weights, ks, groups))
    return 32 * sum(weights) / shared
