"""Helpers to run the Snakemake workflow on tiny configs from the tests."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "networks": {"tiny": {"category": "heavy", "demo": True, "model": {"source": "builtin", "arch": "lenet5"}}},
    "demo": {"n_train": 1500, "n_calib": 200, "n_test": 300, "epochs": 4, "batch_size": 64},
    "evaluation": {"batch_size": 500},
    "sweep": {"k_values": [2, 3, 4, 8, 16, 64, 256]},
    "sample": {"n": 60, "shards": 2},
    "surrogate": {"folds": 3},
    "search": {"pop_size": 16, "generations": 12},
    "uniform": {"k_max": 256},
}


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in ``workdir`` with its config.yaml."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
