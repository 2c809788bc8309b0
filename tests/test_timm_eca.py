"""A timm network with ECA attention (Conv1d layers in its forward) through the whole default workflow:
calibration statistics, every correction (bias, centroid refit, BatchNorm statistics: correct.bn auto) and every export
format; before, the calibration stage failed on its Conv1d."""
import numpy as np
import pyarrow.parquet as pq

from workflow_utils import snakemake, write_config

ECA = {"source": "timm", "arch": "resnet10t",
       "kwargs": {"in_chans": 1, "num_classes": 10, "block_args": {"attn_layer": "eca"}}}


def test_an_eca_network_runs_through_every_stage_and_format(tmp_path):
    config = {"networks": {"eca": {"category": "heavy", "demo": True, "model": ECA}},
              "demo": {"n_train": 300, "n_calib": 100, "n_test": 100, "epochs": 1, "batch_size": 50},
              "evaluation": {"batch_size": 100},
              "sweep": {"k_values": [2, 16], "layers_per_job": 40},
              "correct": {"bias": True, "centroids": True, "bn": "auto"},
              "sample": {"n": 8, "shards": 1}, "surrogate": {"folds": 2}, "refine": {"rounds": 1},
              "uniform": {"k_max": 16}, "export": {"targets": [1.0]}}
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    root = tmp_path / "results" / "eca"
    layers = pq.read_table(root / "layers.parquet").to_pylist()
    eca = [l for l in layers if l["name"].endswith("se.conv")]
    assert len(eca) == 4 and all(len(l["shape"]) == 3 for l in eca)  # Conv1d weights (1, 1, k)
    swept = {r["layer"] for r in pq.read_table(next((root / "sweep").glob("*.parquet"))).to_pylist()}
    assert {l["name"] for l in eca} <= swept
    exported = pq.read_table(root / "export.parquet").to_pylist()
    assert [r["format"] for r in exported] == ["packed", "onnx", "coreml"]
    assert all(r["predictions_differing"] == 0 for r in exported[:2])
    assert np.isfinite([r["cr_float32"] for r in exported]).all()
