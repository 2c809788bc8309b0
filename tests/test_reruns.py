"""Incremental reruns, determinism and interruption (issue: scale-out and reproducibility)."""
import copy
import os
import signal
import subprocess
import time

from workflow_utils import TINY, planned_jobs, result_tables, snakemake, snakemake_cmd, write_config

DOWNSTREAM_OF_SEARCH = {"search", "refine", "validate", "export", "report", "summary", "all"}


def dry_run_after_change(workdir, change):
    cfg = copy.deepcopy(TINY)
    change(cfg)
    (workdir / "changed.yaml").write_text(__import__("yaml").safe_dump(cfg))
    proc = snakemake(workdir, "--dry-run", "--cores", "1", configfile="changed.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return planned_jobs(proc.stdout + proc.stderr)


def test_complete_run_plans_nothing(tiny_run):
    proc = snakemake(tiny_run, "--dry-run", "--cores", "1")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_generations_reruns_search_and_after_only(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c["search"].setdefault("nsga2", {}).update(generations=13))
    assert set(jobs) == DOWNSTREAM_OF_SEARCH


def test_changing_sample_count_reruns_from_sample(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c["sample"].update(n=61))
    assert set(jobs) == {"sample", "surrogate"} | DOWNSTREAM_OF_SEARCH
    assert jobs["sample"] == 2


def test_changing_sample_images_reruns_from_sample_and_the_surrogate_target_from_surrogate(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c["sample"].update(images=50))
    assert set(jobs) == {"sample", "surrogate"} | DOWNSTREAM_OF_SEARCH
    jobs = dry_run_after_change(tiny_run, lambda c: c["surrogate"].update(target="kl"))
    assert set(jobs) == {"surrogate"} | DOWNSTREAM_OF_SEARCH


def test_changing_sweep_grid_reruns_from_sweep(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c["sweep"].update(k_values=[2, 3, 4, 8, 16, 32, 256]))
    assert set(jobs) == {"sweep", "candidates", "sample", "surrogate", "uniform"} | DOWNSTREAM_OF_SEARCH
    assert jobs["sweep"] == 5
    assert "prepare" not in jobs and "demo" not in jobs


def test_changing_the_bound_reruns_from_candidates(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c["networks"]["tiny"].update(bound=0.97))
    assert set(jobs) == {"candidates", "sample", "surrogate", "validate"} | DOWNSTREAM_OF_SEARCH


def test_changing_the_thread_count_reruns_nothing(tiny_run):
    jobs = dry_run_after_change(tiny_run, lambda c: c.setdefault("evaluation", {}).update(threads=2))
    assert jobs == {}


def test_config_override_keeps_the_workflow_config(tmp_path):
    """--config key=value overrides a key of config.yaml; it does not drop the file."""
    import shutil

    from workflow_utils import REPO
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    proc = subprocess.run(snakemake_cmd(tmp_path, "--dry-run", "--cores", "1", "--config", "results=elsewhere",
                                        configfile=None), capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "elsewhere/lenet5_mnist/demo/data.npz" in out and "elsewhere/summary.md" in out


def test_killed_job_leaves_nothing_half_written_and_run_resumes(tiny_run, tmp_path):
    """SIGKILL a sample job midway in a one-core run; the resumed run equals the two-core reference."""
    write_config(tmp_path, TINY)
    proc = subprocess.Popen(snakemake_cmd(tmp_path, "--cores", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600
    victim = None
    try:
        while victim is None and time.time() < deadline and proc.poll() is None:
            found = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", r"scripts/tmp.*sample\.py"],
                                   capture_output=True, text=True).stdout.split()
            victim = int(found[0]) if found else None
            time.sleep(0.1)
        assert victim is not None, "no sample job seen"
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out[-2000:]
    assert "Error in rule sample" in out
    # nothing half-written: the killed job left no output, and every table present reads completely
    assert not (tmp_path / "results/tiny/samples.parquet").exists()
    import pyarrow.parquet as pq
    for path in (tmp_path / "results").rglob("*.parquet"):
        pq.read_table(path)
    assert not list((tmp_path / "results").rglob("*.tmp"))
    resumed = snakemake(tmp_path, "--cores", "1", "--rerun-incomplete")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # same config and seeds, one core and an interruption: identical tables to the reference run
    assert result_tables(tmp_path) == result_tables(tiny_run)


def test_permuted_test_labels_change_no_choice(tiny_run, tmp_path):
    """The test split decides nothing: the tiny run repeated with its test labels permuted (every stage from
    prepare on reruns) makes identical choices (candidates, samples, fronts, selectable points, exported
    points and files' codebooks); only the test measurements differ."""
    import shutil

    import numpy as np
    import pyarrow.parquet as pq

    work = tmp_path / "permuted"
    shutil.copytree(tiny_run, work, symlinks=True)
    npz = work / "results/tiny/demo/data.npz"
    with np.load(npz) as z:
        arrays = dict(z)
    arrays["y_test"] = np.random.default_rng(0).permutation(arrays["y_test"])
    np.savez(npz, **arrays)
    proc = snakemake(work, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prepare" in proc.stdout + proc.stderr  # the changed data reran the stages that read it

    def table(run, name, drop=("seconds",)):
        rows = pq.read_table(run / "results/tiny" / name).to_pylist()
        return [{k: v for k, v in r.items() if k not in drop and not k.startswith("test_")} for r in rows]

    for name in ("candidates.parquet", "front_predicted.parquet", "front_refined.parquet"):
        assert table(work, name) == table(tiny_run, name)
    for shard in ("samples/shard_0.parquet", "samples/shard_1.parquet"):
        assert table(work, shard) == table(tiny_run, shard)
    validated = [{k: v for k, v in r.items() if k != "on_front"} for r in table(work, "front_validated.parquet")]
    reference = [{k: v for k, v in r.items() if k != "on_front"} for r in table(tiny_run, "front_validated.parquet")]
    assert validated == reference  # every calibration column and the selectable flags
    keep = ("target", "format", "point", "k", "groups", "cr", "calib_accuracy", "meets_target", "index_bits",
            "codebook_bits")
    exported = [{k: r[k] for k in keep} for r in pq.read_table(work / "results/tiny/export.parquet").to_pylist()]
    assert exported == [{k: r[k] for k in keep} for r in pq.read_table(tiny_run / "results/tiny/export.parquet")
                        .to_pylist()]
    base = pq.read_table(tiny_run / "results/tiny/front_validated.parquet").column("test_accuracy").to_pylist()
    assert pq.read_table(work / "results/tiny/front_validated.parquet").column("test_accuracy").to_pylist() != base
