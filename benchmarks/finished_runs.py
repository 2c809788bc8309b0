"""The networks of a finished run of ``configs/benchmark.yaml``, for the benchmark scripts that measure
its validated points again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from weight_sharing.bound import SelectRule
from weight_sharing.config import load_config, model_config
from weight_sharing.tables import CandidateSet

REPO = Path(__file__).resolve().parents[1]


@dataclass
class FinishedNetwork:
    name: str
    folder: Path
    model_cfg: dict
    npz: str
    candidates: CandidateSet
    validated: list[dict]


@dataclass
class FinishedRun:
    """One network of a finished run of any config: the config, its folder, the evaluation spec its
    evaluating stages used (corrections and calibration statistics included) and its baseline."""
    cfg: dict
    folder: Path
    spec: object  # weight_sharing.evaluate.EvaluationSpec (imported with torch, on use)
    baseline: dict


def finished_run(results: str, net: str, config: str) -> FinishedRun:
    """``net`` of the run made into ``results`` with the config file ``config``."""
    from weight_sharing.config import network_paths
    from weight_sharing.evaluate import EvaluationSpec

    cfg = load_config(config)
    net_cfg, folder = cfg["networks"][net], Path(results) / net
    spec = EvaluationSpec(model=model_config(results, net, net_cfg), data=network_paths(results, net, net_cfg)["npz"],
                          engine=dict(cfg["evaluation"]), correct=dict(cfg["correct"]),
                          statistics=str(folder / "calibration.safetensors"))
    return FinishedRun(cfg=cfg, folder=folder, spec=spec, baseline=baseline_of(folder))


def default_rule(**overrides) -> SelectRule:
    """The default config's ``select`` rule, with ``overrides`` (e.g. ``confidence``)."""
    return SelectRule.from_config({**load_config(REPO / "config.yaml")["select"], **overrides})


def network_folders(results: str) -> list[Path]:
    """The network folders of a results folder that hold a validated front, by name."""
    return sorted(p.parent for p in Path(results).glob("*/front_validated.parquet"))


def baseline_of(net_dir: Path) -> dict:
    """The network's ``baseline.json``: accuracies and image counts of its splits."""
    return json.loads((net_dir / "baseline.json").read_text())


def validated_networks(results_folders: list[str], columns: list[str] | None = None):
    """(results folder, network folder, baseline, validated front as an Arrow table) of every network
    of every folder."""
    for results in results_folders:
        for net_dir in network_folders(results):
            yield results, net_dir, baseline_of(net_dir), pq.read_table(net_dir / "front_validated.parquet",
                                                                        columns=columns)


def finished_networks(results: str, max_points: int, names: list[str] | None = None):
    """Each network of the run (demo networks: data and checkpoint under the results folder) with at
    most ``max_points`` of its validated points, spread evenly over their CR range."""
    folder = Path(results)
    config = load_config(REPO / "configs" / "benchmark.yaml")
    for net_dir in network_folders(results):
        if names and net_dir.name not in names:
            continue
        validated = sorted(pq.read_table(net_dir / "front_validated.parquet").to_pylist(), key=lambda v: v["cr"])
        if len(validated) > max_points:
            validated = [validated[i] for i in np.linspace(0, len(validated) - 1, max_points).round().astype(int)]
        yield FinishedNetwork(
            name=net_dir.name, folder=net_dir,
            model_cfg=model_config(str(folder), net_dir.name, config["networks"][net_dir.name]),
            npz=str(net_dir / "demo" / "data.npz"),
            candidates=CandidateSet(pq.read_table(net_dir / "candidates.parquet"),
                                    pq.read_table(net_dir / "layers.parquet").to_pylist()),
            validated=validated)
