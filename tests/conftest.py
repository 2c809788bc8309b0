import numpy as np
import pytest
import torch

from weight_sharing.models import LeNet5
from workflow_utils import TINY, snakemake, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The workflow run once on the tiny demo config with --cores 2 (the reference run)."""
    work = tmp_path_factory.mktemp("tiny_run")
    write_config(work, TINY)
    proc = snakemake(work, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.fixture
def tiny_npz(tmp_path):
    """A small evaluation .npz in the documented format (random digits-shaped data)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_calib=rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8),
             y_calib=rng.integers(0, 10, 40), x_test=rng.integers(0, 256, (60, 1, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 60), mean=np.array([0.13]), std=np.array([0.31]))
    return path


@pytest.fixture
def lenet_checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    torch.save(LeNet5().state_dict(), path)
    return path
