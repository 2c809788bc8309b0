"""End-to-end runs of the workflow on a tiny config: every output, and their consistency."""
import copy
import json

import pyarrow.parquet as pq
import pytest

from weight_sharing.compression import compression_rate, index_bits
from workflow_utils import TINY, snakemake, write_config


def test_every_output_exists(tiny_run):
    net = tiny_run / "results" / "tiny"
    for rel in ["demo/data.npz", "demo/checkpoint.pt", "baseline.json", "layers.parquet", "candidates.parquet",
                "samples.parquet", "surrogate.json", "surrogate.png", "front_predicted.parquet",
                "front_validated.parquet", "uniform.parquet", "report/fronts.png", "report/sensitivity.png",
                "report/summary.json", "logs/prepare.log", "logs/search.log"]:
        assert (net / rel).is_file(), rel
    for layer in ["conv1", "conv2", "fc1", "fc2", "fc3"]:
        assert (net / "sweep" / f"{layer}.parquet").is_file()
    summary = (tiny_run / "results" / "summary.md").read_text()
    assert "| tiny | heavy | 99% | 5 |" in summary
    assert (tiny_run / "results" / "summary.csv").read_text().startswith("network,")


def test_sweep_rows(tiny_run):
    t = pq.read_table(tiny_run / "results/tiny/sweep/conv1.parquet").to_pylist()
    assert [r["k"] for r in t] == [2, 3, 4, 8, 16, 64, 150]  # 256 capped at the 150 weights
    base = json.loads((tiny_run / "results/tiny/baseline.json").read_text())
    for r in t:
        assert r["bits"] == index_bits(r["k"])
        assert len(r["centroids"]) == r["codebook_size"] and len(r["thresholds"]) == r["codebook_size"] - 1
        assert r["al"] == pytest.approx(base["calib_accuracy"] - r["accuracy"])
    inertia = [r["inertia"] for r in t]
    assert all(a >= b for a, b in zip(inertia, inertia[1:]))  # more clusters never hurt


def test_samples_and_front_consistent(tiny_run):
    net = tiny_run / "results/tiny"
    weights = [r["weights"] for r in pq.read_table(net / "layers.parquet").to_pylist()]
    samples = pq.read_table(net / "samples.parquet").to_pylist()
    assert [s["sample"] for s in samples] == list(range(60))
    for s in samples:
        assert s["cr"] == pytest.approx(compression_rate(weights, s["k"]))
    validated = pq.read_table(net / "front_validated.parquet").to_pylist()
    predicted = pq.read_table(net / "front_predicted.parquet").to_pylist()
    assert len(validated) == len(predicted) >= 1
    for v in validated:
        assert v["cr"] == pytest.approx(compression_rate(weights, v["k"]))
    assert any(v["on_front"] for v in validated)
    surrogate = json.loads((net / "surrogate.json").read_text())
    assert surrogate["n_samples"] == 60 and "r2_heldout" in surrogate


def test_uniform_256_loses_almost_nothing(tiny_run):
    rows = {r["k"]: r for r in pq.read_table(tiny_run / "results/tiny/uniform.parquet").to_pylist()}
    assert set(rows) == {2, 3, 4, 8, 16, 64, 256}
    assert abs(rows[256]["test_al"]) <= 0.01
    assert rows[2]["cr"] > rows[256]["cr"]


def test_export_reloads_to_the_validated_model(tiny_run):
    net = tiny_run / "results/tiny"
    rows = pq.read_table(net / "export.parquet").to_pylist()
    assert [r["target"] for r in rows] == [1.0, 1.5]
    validated = pq.read_table(net / "front_validated.parquet").to_pylist()
    for r in rows:
        path = net / "export" / r["file"]
        assert path.is_file() and path.stat().st_size == r["file_bytes"]
        assert r["predictions_equal"]
        assert any(v["k"] == r["k"] and v["test_accuracy"] == r["test_accuracy"] for v in validated)
        assert r["packed_shared_bytes"] == r["index_bytes"] + r["codebook_bytes"]
        assert r["cr_on_disk"] == pytest.approx(r["shared_float_bytes"] / r["packed_shared_bytes"])
        assert r["cr_huffman"] >= r["cr_on_disk"] * 0.999
    from weight_sharing.export import load_compressed
    model, meta = load_compressed(net / "export" / rows[0]["file"])
    assert meta["architecture"]["arch"] == "lenet5" and json.loads(meta["k"]) == rows[0]["k"]


def test_bad_config_stops_before_any_work(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["networks"]["tiny"]["bound"] = 1.5
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert "bound" in proc.stderr and "1.5" in proc.stderr
    assert not (tmp_path / "results").exists()

    cfg = copy.deepcopy(TINY)
    cfg["networks"]["mine"] = {"category": "light", "model": {"source": "timm", "arch": "resnet18",
                                                              "checkpoint": str(tmp_path / "missing.pt")},
                               "data": {"npz": str(tmp_path / "missing.npz")}}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert "networks.mine.model.checkpoint" in proc.stderr and "missing.pt" in proc.stderr
    assert not (tmp_path / "results").exists()
