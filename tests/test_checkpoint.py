"""bioglom.checkpoint: runs stopped by Ctrl-C or SIGKILL resume to exactly the unstopped run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import (
    RELIABLE,
    assert_same_run,
    assert_same_weights,
    fresh_seed,
    interrupt_at,
    poison_at,
    small_config,
)

from bioglom.checkpoint import checkpoint_path, load_checkpoint
from bioglom.config import ConfigError, documented_toml
from bioglom.runs import open_run
from bioglom.train import train


@pytest.mark.parametrize(
    "schedule, stop", [("", 6), ("day 5, night 3, interleaved 4", 9)], ids=["day", "day-night"]
)
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, schedule, stop):
    """SIGINT during the rule's 6th update stops the run at the end of that update (update 6;
    with a night of 3 in between, update 9, between two records) as `interrupted`, with a
    checkpoint there; resuming ends with exactly the weights, records and snapshots of a run
    never interrupted (night updates, replay memory, every generator and the means in progress
    since the last record included)."""
    cfg = small_config(**RELIABLE, schedule__phases=schedule, run__seed=fresh_seed() % 1000)
    reference = train(cfg, tmp_path / "ref.h5", progress=False)
    assert reference.status == "finished"
    assert not checkpoint_path(tmp_path / "ref.h5").exists()  # removed once finished

    path = tmp_path / "run.h5"
    with monkeypatch.context() as m:
        interrupt_at(m, 6)
        stopped = train(cfg, path, progress=False)
    assert stopped.status == "interrupted" and f"update {stop}" in stopped.reason
    assert load_checkpoint(checkpoint_path(path))["update"] == stop
    with open_run(path) as run:
        assert run.status == "interrupted" and run.steps[-1] == stop - stop % 2
    resumed = train(cfg, path, progress=False, resume=True)
    assert resumed.status == "finished"
    assert_same_run(reference.path, path)
    assert_same_weights(reference.path, path)
    with open_run(path) as run:
        assert run.status == "finished" and "resumed" in run.attrs


def test_resume_refuses_another_config_and_a_missing_checkpoint(tmp_path, monkeypatch):
    """Resuming with a changed field is a config error naming that field; a run without a
    checkpoint cannot be resumed, and a finished one says so."""
    path = tmp_path / "run.h5"
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        train(small_config(**RELIABLE), path, progress=False)
    with pytest.raises(ConfigError, match="train.lr"):
        train(small_config(**RELIABLE, train__lr=0.5), path, progress=False, resume=True)
    checkpoint_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train(small_config(**RELIABLE), path, progress=False, resume=True)
    done = tmp_path / "done.h5"
    train(small_config(**RELIABLE), done, progress=False)
    with pytest.raises(FileNotFoundError, match="finished"):
        train(small_config(**RELIABLE), done, progress=False, resume=True)


def write_config(tmp_path, **overrides):
    path = tmp_path / "cfg.toml"
    path.write_text(documented_toml(small_config(**overrides)))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bioglom.cli", *args]


def test_sigkill_at_random_moments_leaves_a_readable_run_that_resumes(tmp_path):
    """Five trials: `bioglom run` is killed with SIGKILL at a random moment of its training
    (uniform over 5-95% of the uninterrupted run's time from the file's creation). Its file still
    opens with whole records (every metric column as long as the step column, steps rising);
    where a checkpoint had been written, `--resume` finishes the run with exactly the weights
    and records of the uninterrupted one."""
    overrides = {
        "train__updates": 60,
        "run__record_every": 2,
        "run__checkpoint_every": 5,
        "run__snapshot_every": 10,
    }
    config = write_config(tmp_path, **overrides)
    ref = tmp_path / "ref.h5"
    subprocess.run(cli("run", str(config), "--out", str(ref), "--quiet"), check=True, timeout=300)
    with open_run(ref) as run:
        training_s = float(run.metrics["elapsed_s"][-1])  # from the file's creation to the end
    rng = np.random.default_rng(fresh_seed())
    resumed = 0
    for trial in range(5):
        path = tmp_path / f"killed{trial}.h5"
        proc = subprocess.Popen(
            cli("run", str(config), "--out", str(path), "--quiet"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline:  # training has begun
            time.sleep(0.005)
        time.sleep(rng.uniform(0.05, 0.95) * training_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if not path.exists():
            continue  # killed before the run file was created
        with open_run(path) as run:
            steps = run.steps
            assert all(len(v) == len(steps) for v in run.metrics.values())
            assert np.all(np.diff(steps) > 0)
        ckpt = checkpoint_path(path)
        if ckpt.exists():
            assert load_checkpoint(ckpt)["update"] % 5 == 0
            done = subprocess.run(
                cli("run", str(config), "--out", str(path), "--quiet", "--resume"), timeout=300
            )
            assert done.returncode == 0
            assert_same_run(ref, path)
            assert_same_weights(ref, path)
            resumed += 1
    assert resumed >= 1, "no trial was killed between two checkpoints"


def test_a_fresh_run_removes_a_stale_checkpoint_and_arms_check_their_config(tmp_path, monkeypatch):
    """Training afresh into a file deletes the checkpoint an earlier run left there (so that a
    later --resume cannot pick up another run's weights), but a refusal to overwrite keeps it;
    `run_arm(resume=True)` keeps a diverged arm as it is, and retrains a finished one whose
    config differs."""
    from bioglom.experiment import run_arm

    path = tmp_path / "run.h5"
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        train(small_config(**RELIABLE), path, progress=False)
    assert checkpoint_path(path).exists()
    with pytest.raises(FileExistsError):
        train(small_config(**RELIABLE), path, progress=False)  # no overwrite: nothing touched
    assert checkpoint_path(path).exists()
    other = small_config(**{**RELIABLE, "run__checkpoint_every": 0})
    train(other, path, overwrite=True, progress=False)
    assert not checkpoint_path(path).exists()

    cfg = small_config(**RELIABLE)
    assert run_arm(cfg, path, resume=True, progress=False) == "finished"  # config differed
    with open_run(path) as run:
        assert run.config.run.checkpoint_every == 4
    stamp = path.stat().st_mtime_ns
    assert run_arm(cfg, path, resume=True, progress=False) == "finished"
    assert path.stat().st_mtime_ns == stamp

    bad = tmp_path / "diverged.h5"
    with monkeypatch.context() as m:
        poison_at(m, 3)
        assert run_arm(cfg, bad, progress=False) == "diverged"
    stamp = bad.stat().st_mtime_ns
    assert run_arm(cfg, bad, resume=True, progress=False) == "diverged"  # kept, not retrained
    assert bad.stat().st_mtime_ns == stamp


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ctrl_c_and_resume_on_cuda_with_nights_and_spikes(tmp_path, monkeypatch):
    """On CUDA a run with nights and the spiking rule stops on Ctrl-C and resumes to the end
    (the replay memory and the spike generator come back on the device)."""
    cfg = small_config(
        **RELIABLE,
        schedule__phases="day 5, night 3, interleaved 4",
        train__rule="temporal",
        temporal__spiking=True,
        run__device="cuda",
    )
    path = tmp_path / "run.h5"
    with monkeypatch.context() as m:
        interrupt_at(m, 6)
        assert train(cfg, path, progress=False).status == "interrupted"
    assert train(cfg, path, progress=False, resume=True).status == "finished"
