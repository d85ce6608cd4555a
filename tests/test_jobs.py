"""bioglom.jobs (``--jobs N``): jobs as separate processes train exactly what one process
trains, with cores/N threads each; Ctrl-C stops them all with checkpoints and ``--resume``
ends where an uninterrupted run ends; a failing job is named; the experiment helpers that
report seeds (spread, differs) by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_run, assert_same_weights, small_config

from bioglom.checkpoint import checkpoint_path
from bioglom.experiment import differs, experiment_parser, spread
from bioglom.jobs import Job, JobsFailed, run_jobs, threads_per_job
from bioglom.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
UPDATES = 120  # so that a job stopped after its second record (update 10) is far from done


def jobs_in(folder: Path, updates: int = UPDATES) -> list[Job]:
    return [
        Job(
            small_config(
                train__updates=updates,
                run__seed=seed,
                run__record_every=10,
                run__checkpoint_every=0,
            ),
            folder / f"arm_seed{seed}.h5",
        )  # fmt: skip
        for seed in (0, 1)
    ]


PARENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from conftest import small_config
    from bioglom.jobs import Job, run_jobs
    from test_jobs import jobs_in
    try:
        print(run_jobs(jobs_in(Path({folder!r})), n_jobs=2, progress=False), flush=True)
    except KeyboardInterrupt as stop:
        print("stopped:", stop, flush=True)
        sys.exit(130)
    """
)


def test_threads_per_job_divides_the_cores():
    """N jobs share the cores: cores // N threads each, never fewer than one."""
    assert threads_per_job(1, cores=16) == 16
    assert threads_per_job(2, cores=16) == 8
    assert threads_per_job(3, cores=16) == 5
    assert threads_per_job(4, cores=2) == 1
    assert threads_per_job(2) >= 1


@pytest.mark.slow
def test_ctrl_c_stops_every_job_with_a_checkpoint_and_resume_matches_one_process(tmp_path):
    """Two jobs in two processes, Ctrl-C sent to the parent alone once both have recorded:
    the parent exits 130, every job stops with its checkpoint (status interrupted), and
    resuming them in two processes ends with the records and weights of the same jobs trained
    without interruption, one after another in this process; each job ran on cores/2 threads."""
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    code = PARENT.format(tests=str(ROOT / "tests"), folder=str(parallel))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    jobs = jobs_in(parallel)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if all(_records(job.out) >= 2 for job in jobs):  # both past update 10
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err[-2000:])
    assert "stopped" in out and "checkpoints" in out
    for job in jobs:
        assert checkpoint_path(job.out).exists(), job.out
        with open_run(job.out) as run:
            assert run.status == "interrupted"
            assert run.steps[-1] < UPDATES

    assert run_jobs(jobs, n_jobs=2, resume=True, progress=False) == {
        "arm_seed0": "finished",
        "arm_seed1": "finished",
    }
    reference = jobs_in(serial)
    assert run_jobs(reference, n_jobs=1, progress=False) == {
        "arm_seed0": "finished",
        "arm_seed1": "finished",
    }
    for job, ref in zip(jobs, reference, strict=True):
        assert_same_run(job.out, ref.out)
        assert_same_weights(job.out, ref.out)
        with open_run(job.out) as run:
            assert run.versions["torch_threads"] == str(threads_per_job(2))


def _records(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with open_run(path) as run:
            return run.n_records
    except (OSError, ValueError, KeyError):
        return 0  # being created


def test_a_failing_job_is_named_and_the_other_finishes(tmp_path):
    """A job that raises in its process (its MNIST folder holds no IDX files) does not take
    the others down: they finish, and JobsFailed names the failed job and carries its error."""
    (tmp_path / "empty").mkdir()
    good = Job(small_config(train__updates=2), tmp_path / "good.h5")
    bad = Job(
        small_config(train__updates=2, data__source="mnist", data__path=str(tmp_path / "empty")),
        tmp_path / "bad.h5",
    )
    with pytest.raises(JobsFailed) as err:
        run_jobs([good, bad], n_jobs=2, progress=False)
    assert "1 of 2 jobs failed" in str(err.value) and "bad:" in str(err.value)
    assert "Traceback" in str(err.value)
    with open_run(good.out) as run:
        assert run.status == "finished"


def test_run_jobs_refuses_duplicate_names_and_no_jobs_count(tmp_path):
    """Two jobs writing one file, or fewer than one job at a time, are errors naming it."""
    job = Job(small_config(), tmp_path / "a.h5")
    with pytest.raises(ValueError, match="must differ"):
        run_jobs([job, job], n_jobs=2)
    with pytest.raises(ValueError, match="n_jobs = 0"):
        run_jobs([job], n_jobs=0)
    ap = experiment_parser("doc", ["quick"], "out")
    assert ap.parse_args([]).jobs == 1
    assert ap.parse_args(["--jobs", "3"]).jobs == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            ap.parse_args(["--jobs", bad])


def test_spread_and_differs_by_hand():
    """mean and sample sd of per-seed values (NaN left out); two arms differ only when their
    means are further apart than the sum of their sds."""
    m, s = spread([1.0, 2.0, 3.0, float("nan")])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert spread([4.0]) == (4.0, 0.0)
    assert all(np.isnan(spread([float("nan")])))
    # means 2 and 5, sds 1 and 1: 3 > 2, a difference
    assert differs([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    # means 2 and 3.5, sds 1 and 1.5 (values 2, 3.5, 5): 1.5 < 2.5, not a difference
    assert not differs([1.0, 2.0, 3.0], [2.0, 3.5, 5.0])
    assert not differs([1.0], [9.0])  # one seed: no spread to exceed
