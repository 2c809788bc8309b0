"""The tables that pass between stages: their schemas, readers and the indexed candidate set.

A stage writes its table with the schema named here and the next stage reads it through the
reader named here, so no stage imports another to learn the shape of its input.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .codebook import Codebook
from .compression import compression_rates, shared_bits
from .io import atomic_path, read_parquet

# sweep/{chunk}.parquet: one row per layer, codebook count and K
SWEEP_SCHEMA = pa.schema([
    ("layer", pa.string()), ("k", pa.int64()), ("groups", pa.int64()), ("group", pa.int64()), ("bits", pa.int64()),
    ("codebook_size", pa.int64()),
    ("inertia", pa.float64()), ("accuracy", pa.float64()), ("al", pa.float64()), ("kl", pa.float64()),
    ("changed", pa.float64()), ("broken", pa.int64()), ("fixed", pa.int64()),
    ("thresholds", pa.list_(pa.float64())), ("centroids", pa.list_(pa.float32())),
    ("refit", pa.bool_()), ("kmeans_kl", pa.float64()), ("refit_kl", pa.float64()),
    ("seconds", pa.float64()),
])

# samples/shard_{i}.parquet: one row per evaluated combination
SAMPLE_SCHEMA = pa.schema([
    ("sample", pa.int64()), ("k", pa.list_(pa.int64())), ("choice", pa.list_(pa.int64())),
    ("layer_al", pa.list_(pa.float64())), ("layer_kl", pa.list_(pa.float64())),
    ("layer_inertia", pa.list_(pa.float64())),
    ("accuracy", pa.float64()), ("al", pa.float64()), ("kl", pa.float64()), ("changed", pa.float64()),
    ("broken", pa.int64()), ("fixed", pa.int64()),
    ("cr", pa.float64()),
])

# front_predicted.parquet: the search's points
FRONT_SCHEMA = pa.schema([
    ("point", pa.int64()), ("k", pa.list_(pa.int64())), ("groups", pa.list_(pa.int64())),
    ("choice", pa.list_(pa.int64())), ("predicted", pa.float64()), ("cr", pa.float64()),
])

# the measurement columns of one split (see ``evaluate.measurement_columns``), calibration and test
MEASUREMENT_COLUMNS = ("accuracy", "al", "kl", "changed", "broken", "fixed")
SPLIT_COLUMNS = [(f"{split}_{c}", pa.float64() if c not in ("broken", "fixed") else pa.int64())
                 for split in ("calib", "test") for c in MEASUREMENT_COLUMNS]
CALIB_COLUMNS = [f for f in SPLIT_COLUMNS if f[0].startswith("calib_")]
# the unlabelled selection split (null unless select.split is unlabelled): no accuracy, only fidelity
SELECT_COLUMNS = [("select_kl", pa.float64()), ("select_changed", pa.float64()), ("select_images", pa.int64())]

# front_refined.parquet: the front's columns plus the calibration measurement of each point
REFINED_SCHEMA = pa.schema(list(FRONT_SCHEMA) + CALIB_COLUMNS)

# front_refined_tensors.safetensors: per refined point, the model tensors its corrections gave on calibration
# (``Evaluator.export_tensors``: corrected biases, re-estimated BatchNorm statistics), as "{point}/{tensor}";
# validate sets them instead of correcting again. Empty without corrections.


def write_point_tensors(tensors: dict[int, dict[str, np.ndarray]], path: str) -> None:
    """Each point's tensors into one safetensors file (written whole or not at all)."""
    from safetensors.numpy import save_file

    flat = {f"{point}/{name}": np.array(value, order="C") for point, named in tensors.items()  # 0-d stays 0-d
            for name, value in named.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={"points": ",".join(str(p) for p in sorted(tensors))})


def read_point_tensors(path: str) -> dict[int, dict[str, np.ndarray]]:
    """Point -> its tensors (``write_point_tensors``), every point the file lists (possibly with none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        listed = (f.metadata() or {}).get("points", "")
        out: dict[int, dict[str, np.ndarray]] = {int(p): {} for p in listed.split(",") if p}
        for key in f.keys():
            point, name = key.split("/", 1)
            out[int(point)][name] = f.get_tensor(key)
    return out


# front_validated.parquet
VALIDATED_SCHEMA = pa.schema([
    ("point", pa.int64()), ("k", pa.list_(pa.int64())), ("groups", pa.list_(pa.int64())),
    ("choice", pa.list_(pa.int64())), ("cr", pa.float64()), ("predicted", pa.float64()),
    *SPLIT_COLUMNS, *SELECT_COLUMNS, ("on_front", pa.bool_()), ("selectable", pa.bool_()),
    ("test_within_bound", pa.bool_()),
])

# uniform.parquet's granularity column: the reference's name -> whether it keeps a codebook per group of
# output channels (the uniform stage measures both; the report names the better)
UNIFORM_GRANULARITIES = {"tensor": False, "channel": True}

# uniform.parquet: every layer the same K, one codebook per tensor or one per group of ``group`` output
# channels (``granularity``, above); ``groups``: each layer's codebook count
UNIFORM_SCHEMA = pa.schema([("granularity", pa.string()), ("k", pa.int64()), ("group", pa.int64()),
                            ("groups", pa.list_(pa.int64())), ("cr", pa.float64()), *SPLIT_COLUMNS,
                            *SELECT_COLUMNS])


def codebook_from_row(row: dict) -> Codebook:
    """The codebook a sweep (or candidates) row stores; a grouped one has one row of values per group."""
    groups, group = int(row.get("groups") or 1), int(row.get("group") or 0)
    thr = np.asarray(row["thresholds"], dtype=np.float64)
    cent = np.asarray(row["centroids"], dtype=np.float32)
    if group:
        thr, cent = thr.reshape(groups, -1), cent.reshape(groups, -1)
    return Codebook(k=int(row["k"]), thresholds=thr, centroids=cent, inertia=float(row["inertia"]), group=group)


def rows_by_layer(rows) -> dict[str, list[dict]]:
    """Sweep rows grouped by layer, in order."""
    by_layer: dict[str, list[dict]] = {}
    for r in rows:
        by_layer.setdefault(r["layer"], []).append(r)
    return by_layer


def read_sweeps(sweep_files: list[str]) -> dict[str, list[dict]]:
    """Sweep rows by layer, from any number of sweep files (one or several layers each)."""
    return rows_by_layer(r for f in sweep_files for r in read_parquet(f).to_pylist())


def read_samples(sample_files: list[str]) -> pa.Table:
    """All sample shards as one table, in draw order."""
    return pa.concat_tables([read_parquet(f) for f in sample_files]).sort_by("sample")


def read_layers(layers_parquet: str) -> list[dict]:
    """The shared-layer table (prepare's ``layers.parquet``) as rows, in network order."""
    return read_parquet(layers_parquet).to_pylist()


class CandidateSet:
    """The candidates of every layer, indexed for combinations: ``choice[l]`` picks a row of layer l."""

    def __init__(self, table: pa.Table, layers: list[dict]):
        self.layer_names = [l["name"] for l in layers]
        self.n_weights = np.array([l["weights"] for l in layers], dtype=np.int64)
        energy = np.array([l.get("energy", 1.0) for l in layers], dtype=np.float64)
        rows = table.to_pylist()
        per_layer: list[list[dict]] = [[] for _ in layers]
        index = {n: i for i, n in enumerate(self.layer_names)}
        for r in rows:
            if r["layer"] not in index:
                raise ValueError(f"candidates: layer {r['layer']!r} is not in the layer table")
            per_layer[index[r["layer"]]].append(r)
        empty = [self.layer_names[i] for i, p in enumerate(per_layer) if not p]
        if empty:
            raise ValueError(f"candidates: no candidate for layers {empty}")
        for p in per_layer:
            p.sort(key=lambda r: (r["k"], r.get("groups") or 1))
        self.codebooks = [[codebook_from_row(r) for r in p] for p in per_layer]
        self.sizes = np.array([len(p) for p in per_layer], dtype=np.int64)
        pad = int(self.sizes.max())
        self.k = np.zeros((len(layers), pad), dtype=np.int64)
        self.groups = np.ones((len(layers), pad), dtype=np.int64)  # codebooks of each candidate
        self.al = np.zeros((len(layers), pad))
        self.kl = np.zeros((len(layers), pad))
        self.inertia = np.zeros((len(layers), pad))
        for i, p in enumerate(per_layer):
            for j, r in enumerate(p):
                self.k[i, j], self.al[i, j], self.inertia[i, j] = r["k"], r["al"], r["inertia"]
                self.groups[i, j] = r.get("groups") or 1
                self.kl[i, j] = r.get("kl") or 0.0
        self.energy = energy

    @classmethod
    def read(cls, candidates_parquet: str, layers_parquet: str) -> CandidateSet:
        """The candidate set of ``candidates.parquet`` over the layer table of ``layers.parquet``."""
        return cls(read_parquet(candidates_parquet), read_layers(layers_parquet))

    def gather(self, what: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """Per-layer values (``self.k``, ``self.al``, ...) of a (N, L) array of candidate indices."""
        return what[np.arange(len(self.layer_names)), np.asarray(choice)]

    def bits(self) -> np.ndarray:
        """(L, C) bits of each candidate: W x ceil(log2 K) index bits plus G x K float codebook entries."""
        return shared_bits(self.n_weights[:, None], np.maximum(self.k, 1), self.groups)  # padding: K = 0

    def compression_rates(self, choice) -> np.ndarray:
        """CR of (N, L) candidate indices (the formula with each candidate's codebook count)."""
        c = np.asarray(choice, dtype=np.int64)
        return compression_rates(self.n_weights, self.gather(self.k, c), self.gather(self.groups, c))

    def check_choice(self, choice) -> np.ndarray:
        """A stored choice vector, checked against the candidates (a table from other candidates fails)."""
        c = np.asarray(choice, dtype=np.int64)
        if c.shape != (len(self.layer_names),) or np.any(c < 0) or np.any(c >= self.sizes):
            raise ValueError(f"choice {c.tolist()} does not index these candidates (sizes {self.sizes.tolist()})")
        return c

    def layer_values(self, choice) -> dict[str, np.ndarray]:
        """Per-layer sweep values of (N, L) candidate indices: what the surrogate's features are made of."""
        c = np.asarray(choice, dtype=np.int64)
        rows = np.arange(len(self.layer_names))
        return {"al": self.al[rows, c], "kl": self.kl[rows, c], "inertia": self.inertia[rows, c]}

    def codebooks_of(self, choice) -> dict:
        return {n: self.codebooks[i][int(c)] for i, (n, c) in enumerate(zip(self.layer_names, choice))}

    def front_rows(self, choices: np.ndarray, predicted: np.ndarray, cr: np.ndarray) -> list[dict]:
        """Rows of ``FRONT_SCHEMA`` for (N, L) candidate indices, numbered in the given order."""
        return [{"point": i, "k": self.gather(self.k, c).tolist(), "groups": self.gather(self.groups, c).tolist(),
                 "choice": np.asarray(c).tolist(), "predicted": float(a), "cr": float(r)}
                for i, (c, a, r) in enumerate(zip(choices, predicted, cr))]
