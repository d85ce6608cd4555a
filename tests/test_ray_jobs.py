"""bioglom.jobs with Ray (``--ray ADDRESS``): jobs as Ray tasks on a local Ray instance write
the run files that training in this process writes; a failing job is named; ``--ray`` passes
through the experiment scripts' command line; without Ray the error names the extra. The tests
that need Ray are skipped where it is not installed (``pip install -e ".[ray]"``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import fresh_seed, run_contents, small_config

from bioglom.experiment import experiment_parser, train_jobs
from bioglom.jobs import Job, JobsFailed, run_arm, run_jobs
from bioglom.runs import open_run


def quick_job(folder, seed: int, name: str = "arm", **overrides) -> Job:
    config = small_config(train__updates=20, run__seed=seed, run__record_every=5,
                          run__checkpoint_every=0, **overrides)  # fmt: skip
    return Job(config, folder / f"{name}_seed{seed}.h5")


def assert_close_runs(a, b) -> None:
    """The same records, snapshots and phases, every metric to float tolerance (the Ray task
    trains on other threads than this process)."""
    ma, sa, pa = run_contents(a)
    mb, sb, pb = run_contents(b)
    assert sa == sb and pa == pb
    assert ma.keys() == mb.keys()
    for k in ma:
        np.testing.assert_allclose(ma[k], mb[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_jobs_on_a_local_ray_instance_match_this_process_and_a_failure_is_named(
    tmp_path, monkeypatch
):
    """Two jobs through ``ray="auto"`` with no Ray running: a local instance is started, each
    job's task writes its finished run file, equal to what :func:`run_arm` writes in this
    process for the same config, and the instance is shut down again. With Ray already
    started by the caller, a job that raises gives JobsFailed naming it (with its traceback)
    while the other finishes, and the caller's Ray is left running."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seed = fresh_seed() % 1000
    print(f"seeds {seed}, {seed + 1}")
    assert not ray.is_initialized()
    jobs = [quick_job(tmp_path / "ray", s) for s in (seed, seed + 1)]
    statuses = run_jobs(jobs, n_jobs=2, ray="auto", progress=False)
    assert statuses == {f"arm_seed{seed}": "finished", f"arm_seed{seed + 1}": "finished"}
    assert not ray.is_initialized()  # we started it, so we shut it down
    for job in jobs:
        ref = tmp_path / "here" / job.out.name
        assert run_arm(job.config, ref, progress=False) == "finished"
        with open_run(job.out) as run:
            assert run.status == "finished" and run.config.run.seed == job.config.run.seed
        assert_close_runs(job.out, ref)

    (tmp_path / "empty").mkdir()
    good = quick_job(tmp_path / "fail", seed, "good")
    bad = quick_job(tmp_path / "fail", seed, "bad", data__source="mnist",
                    data__path=str(tmp_path / "empty"))  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        with pytest.raises(JobsFailed) as err:
            run_jobs([good, bad], n_jobs=2, ray="auto", progress=False)
        assert ray.is_initialized()  # the caller's Ray is the caller's to shut down
    finally:
        ray.shutdown()
    message = str(err.value)
    assert "1 of 2 jobs failed" in message and f"bad_seed{seed}:" in message
    assert "Traceback" in message
    assert f"good_seed{seed}:" not in message
    with open_run(good.out) as run:
        assert run.status == "finished"


def test_without_ray_the_error_names_the_extra(tmp_path, monkeypatch):
    """With Ray missing, ``run_jobs(ray=...)`` and an experiment script's ``--ray`` fail with
    an ImportError that says how to install it; an empty address is refused; the option
    defaults to None (local jobs)."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    job = quick_job(tmp_path, 0)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        run_jobs([job], ray="auto", progress=False)
    ap = experiment_parser("doc", ["quick"], "out")
    assert ap.parse_args([]).ray is None
    args = ap.parse_args(["--ray", "auto", "--jobs", "2", "--quiet"])
    assert args.ray == "auto" and args.jobs == 2
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        train_jobs([job], args)
    with pytest.raises(ValueError, match="empty address"):
        run_jobs([job], ray=" ")
    assert not job.out.exists()
