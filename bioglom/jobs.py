"""An experiment's jobs (one arm, one seed, one run file each), trained one after another or
as separate processes (``--jobs N``).

:func:`run_arm` trains one job resumably; :func:`run_jobs` trains a list of them. With
``n_jobs > 1`` each job runs in its own process (the ``spawn`` start method, so no torch state
is inherited) with ``cores // n_jobs`` threads, so that N jobs do not oversubscribe the cores;
the parent draws one combined progress bar over every job's updates and prints a line as each
job ends. Ctrl-C (SIGINT) reaches the parent alone (each job process leaves the terminal's
process group); the parent passes it on once to every running job, which stops at the end of
its update with a checkpoint (a second Ctrl-C stops them at once, as in
:func:`bioglom.train.train`), starts no more jobs, and raises KeyboardInterrupt; the same
command with ``--resume`` continues every job where it stopped.

With ``ray=ADDRESS`` (``--ray``) the jobs run as Ray tasks on a cluster instead (the ``ray``
extra: ``pip install -e ".[ray]"``); see :func:`run_jobs`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue as queue_module
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .checkpoint import checkpoint_path, config_differences
from .config import Config
from .runs import open_run
from .train import TrainResult, schedule_of, train

__all__ = ["Job", "run_arm", "run_jobs", "threads_per_job", "JobsFailed"]


@dataclass(frozen=True)
class Job:
    """One run of an experiment: ``config`` trained into the run file ``out``; ``name`` labels
    it in progress lines (default: the file's stem, e.g. ``shared_seed1``)."""

    config: Config
    out: Path
    name: str = ""

    def label(self) -> str:
        return self.name or Path(self.out).stem


class JobsFailed(RuntimeError):
    """One or more jobs raised; the message names each and ends with its traceback."""


def run_arm(
    config: Config,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_update: Callable[[int, int], None] | None = None,
) -> str:
    """Train one arm of an experiment into ``out``; returns the run's status (``finished`` or
    ``diverged``). Ctrl-C stops the arm with a checkpoint and then raises KeyboardInterrupt,
    so that the experiment stops too (``--resume`` continues it).

    ``resume=False`` trains afresh, replacing ``out``. ``resume=True`` keeps a finished or
    diverged run made with the same config as it is (a diverged arm would only diverge again),
    continues an unfinished one from its checkpoint, and trains afresh where there is no run,
    an unreadable one, one made with another config, or no checkpoint -- so a long experiment
    that was stopped picks up where it was. ``on_update(u, total)`` is called after every
    update (:func:`bioglom.train.train`).
    """
    out = Path(out)
    if resume and out.exists():
        try:
            with open_run(out) as run:
                status, same = run.status, not config_differences(run.config, config)
        except (OSError, ValueError, KeyError):
            status, same = "unreadable", False
        if same and status in ("finished", "diverged"):
            return status
        if same and checkpoint_path(out).exists():
            result = train(config, out, progress=progress, resume=True, on_update=on_update)
            return _stop_if_interrupted(result)
    result = train(config, out, overwrite=True, progress=progress, on_update=on_update)
    return _stop_if_interrupted(result)


def _stop_if_interrupted(result: TrainResult) -> str:
    """An arm stopped by Ctrl-C stops the whole experiment (the arms after it are not
    trained): raises KeyboardInterrupt once the arm's checkpoint is written."""
    if result.status == "interrupted":
        raise KeyboardInterrupt(result.reason)
    return result.status


def threads_per_job(n_jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``n_jobs`` concurrent jobs: ``max(1, cores // n_jobs)``, where
    ``cores`` defaults to the CPUs this process may run on."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, n_jobs))


def run_jobs(
    jobs: Sequence[Job],
    *,
    n_jobs: int = 1,
    resume: bool = False,
    progress: bool = True,
    ray: str | None = None,
) -> dict[str, str]:
    """Train every job; returns ``{job label: status}`` in the jobs' order.

    ``n_jobs = 1`` trains them one after another in this process (each with its own progress
    bar), exactly as :func:`run_arm` does. ``n_jobs > 1`` runs up to ``n_jobs`` at once, each
    in its own process with :func:`threads_per_job` threads (see the module's docstring for
    progress and Ctrl-C). A job that raises does not stop the others already running, but no
    new job starts; :class:`JobsFailed` is raised at the end naming it. Raises
    KeyboardInterrupt after Ctrl-C once every running job has written its checkpoint.

    ``ray`` runs every job as a Ray task instead (even with one job or ``n_jobs = 1``), on the
    cluster at that address: ``"host:6379"`` (a cluster this machine belongs to) or
    ``"ray://host:10001"`` (Ray Client, which needs ``pip install "ray[client]"``); ``"auto"``
    connects to the Ray instance this machine already runs (``$RAY_ADDRESS``, else the last
    ``ray start`` here) and starts a local one when there is none. A driver already connected
    (:func:`ray.init` called before) is used as it is, whatever ``ray`` says; only a
    connection made here is closed (:func:`ray.shutdown`) at the end. ``n_jobs`` still says
    how many jobs run at once, each a task that reserves ``threads`` CPUs (``num_cpus``) and
    trains on as many torch threads, where ``threads`` is the cluster's CPUs // ``n_jobs``
    (:func:`threads_per_job`), at least 1 and at most the largest node's CPUs. Each task
    writes its run file (and checkpoint) to the job's ``out`` itself (made absolute against
    this process's working directory), so ``out`` must be a path that every node sees as the
    same folder (a shared file system); every node needs bioglom (the same version)
    installed. One line per job as it ends and a bar over the jobs show progress; a job that
    raises does not stop those running, but no new one starts (:class:`JobsFailed`, with its
    traceback); Ctrl-C cancels every job not yet ended (a running one stops at the end of its
    update with a checkpoint; a second Ctrl-C kills them) and raises KeyboardInterrupt;
    ``resume`` is as above.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs = {n_jobs}: must be at least 1")
    labels = [job.label() for job in jobs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"job names must differ: {labels}")
    if ray is not None:
        if not ray.strip():
            raise ValueError("ray: an empty address (use 'auto' for a local Ray instance)")
        return _RayPool(jobs, n_jobs, resume, progress, ray.strip()).run()
    if n_jobs == 1 or len(jobs) <= 1:
        return {
            job.label(): run_arm(job.config, job.out, resume=resume, progress=progress)
            for job in jobs
        }
    return _Pool(jobs, n_jobs, resume, progress).run()


_TAG = "bioglom-job "  # a job process's protocol lines on its stdout start with this


def _job_main() -> int:
    """A job process (``python -m bioglom.jobs``): reads ``{"config": TOML, "out": path,
    "resume": bool}`` as one JSON line on stdin, trains it with :func:`run_arm` on the threads
    ``OMP_NUM_THREADS`` gives, and writes JSON lines tagged ``bioglom-job`` to stdout:
    ``{"update": u, "total": n}`` (at most ~5 a second) and at the end ``{"end": status,
    "error": traceback or ""}``."""
    import torch

    from .config import config_from_toml

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    job = json.loads(sys.stdin.readline())
    last = [0.0]

    def say(**message: object) -> None:
        try:
            print(_TAG + json.dumps(message), flush=True)
        except (BrokenPipeError, OSError):  # the parent is gone: finish the run all the same
            pass

    def on_update(u: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.2 or u == total:
            last[0] = now
            say(update=u, total=total)

    try:
        config = config_from_toml(job["config"])
        status = run_arm(config, job["out"], resume=job["resume"], progress=False,
                         on_update=on_update)  # fmt: skip
        say(end=status, error="")
    except KeyboardInterrupt:
        say(end="interrupted", error="")
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises JobsFailed
        say(end="failed", error=traceback.format_exc())
        return 1
    return 0


class _Pool:
    """The parent's side of :func:`run_jobs` with ``n_jobs > 1``: one ``python -m
    bioglom.jobs`` process per job, in its own session (so that the terminal's Ctrl-C reaches
    the parent alone), its stdout read by a thread into one message queue."""

    def __init__(self, jobs: Sequence[Job], n_jobs: int, resume: bool, progress: bool) -> None:
        self.jobs, self.n_jobs, self.resume = list(jobs), n_jobs, resume
        self.threads = threads_per_job(n_jobs)
        self.messages: queue_module.Queue = queue_module.Queue()
        self.running: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, Any] = {}
        self.status: dict[int, str] = {}
        self.errors: dict[int, str] = {}
        self.totals = [len(schedule_of(job.config)) for job in self.jobs]
        self.done_updates = [0] * len(self.jobs)
        self.started: dict[int, float] = {}
        self.pending: list[int] = []
        self.stops = 0
        self.bar = tqdm(
            total=sum(self.totals), unit="upd", disable=not progress, dynamic_ncols=True,
            smoothing=0.05,
        )  # fmt: skip

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.stops += 1
        for p in self.running.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)

    def _describe(self) -> None:
        n = len(self.jobs)
        what = "stopping" if self.stops else f"{len(self.running)} running"
        self.bar.set_description(f"{n} jobs x {self.threads} thread(s): {what}, "
                                 f"{len(self.status)}/{n} done", refresh=True)  # fmt: skip

    def _handle(self, i: int, message: dict) -> None:
        if "update" in message:
            u, self.totals[i] = message["update"], message["total"]
            self.bar.update(max(0, u - self.done_updates[i]))
            self.done_updates[i] = u
        elif "end" in message:
            status = self.status[i] = message["end"]
            if message["error"]:
                self.errors[i] = message["error"]
            if status in ("finished", "diverged"):  # a kept run counts as all its updates
                self.bar.update(max(0, self.totals[i] - self.done_updates[i]))
                self.done_updates[i] = self.totals[i]
            took = time.monotonic() - self.started[i]
            tqdm.write(f"{self.jobs[i].label()}: {status} ({took:.0f} s)")

    def _drain(self, timeout: float) -> None:
        try:
            self._handle(*self.messages.get(timeout=timeout))
            while True:
                self._handle(*self.messages.get_nowait())
        except queue_module.Empty:
            pass

    def _read(self, i: int, stream: Any) -> None:
        for line in stream:
            if line.startswith(_TAG):
                self.messages.put((i, json.loads(line[len(_TAG) :])))

    def _start(self, i: int) -> None:
        job = self.jobs[i]
        out = Path(job.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads),
               "MKL_NUM_THREADS": str(self.threads)}  # fmt: skip
        log = self.logs[i] = tempfile.TemporaryFile(mode="w+")  # the job's stderr
        p = subprocess.Popen(
            [sys.executable, "-m", "bioglom.jobs"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        p.stdin.write(json.dumps({"config": job.config.to_toml(), "out": str(out),
                                  "resume": self.resume}) + "\n")  # fmt: skip
        p.stdin.close()
        threading.Thread(target=self._read, args=(i, p.stdout), daemon=True).start()
        self.running[i] = p
        self.started[i] = time.monotonic()
        self._describe()

    def _reap(self) -> None:
        """Take in every job process that has ended (reading what it still had to say)."""
        for i, p in list(self.running.items()):
            if p.poll() is None:
                continue
            deadline = time.monotonic() + 2.0
            while i not in self.status and time.monotonic() < deadline:
                self._drain(0.05)  # its last lines may still be in the reader thread
            if i not in self.status:
                self.logs[i].seek(0)
                tail = self.logs[i].read()[-4000:]
                self.status[i] = "failed"
                self.errors[i] = f"the job's process ended with exit code {p.returncode}\n{tail}"
                tqdm.write(f"{self.jobs[i].label()}: failed (exit code {p.returncode})")
            self.logs.pop(i).close()
            del self.running[i]
            self._describe()

    def run(self) -> dict[str, str]:
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        self.pending = list(range(len(self.jobs)))
        try:
            while self.pending or self.running:
                while (self.pending and len(self.running) < self.n_jobs
                       and not (self.stops or self.errors)):  # fmt: skip
                    self._start(self.pending.pop(0))
                if not self.running:
                    break  # stopping or failed: the pending jobs are not started
                self._drain(0.2)
                self._reap()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            for p in self.running.values():  # only when this loop itself raised
                p.kill()
            self.bar.close()
        return _outcome(self.jobs, self.status, self.errors, self.stops, self.pending)


def _import_ray() -> Any:
    """The ``ray`` module, or ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError as missing:
        raise ImportError(
            'running jobs on Ray (--ray) needs Ray: pip install -e ".[ray]" '
            '(or pip install "ray>=2.9")'
        ) from missing
    return ray


def _ray_job(config_toml: str, out: str, resume: bool, threads: int) -> tuple[str, str, float]:
    """One job in a Ray worker: trains it with :func:`run_arm` on ``threads`` torch threads
    into ``out`` (on the shared folder); returns ``(status, traceback or "", seconds)``."""
    import torch

    from .config import config_from_toml

    start = time.monotonic()
    torch.set_num_threads(threads)
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        status = run_arm(config_from_toml(config_toml), out, resume=resume, progress=False)
        return status, "", time.monotonic() - start
    except KeyboardInterrupt:  # ray.cancel: the run stopped with its checkpoint
        return "interrupted", "", time.monotonic() - start
    except Exception:  # noqa: BLE001 - reported to the driver, which raises JobsFailed
        return "failed", traceback.format_exc(), time.monotonic() - start


class _RayPool:
    """The driver's side of :func:`run_jobs` with ``ray``: up to ``n_jobs`` Ray tasks at
    once, one per job; Ctrl-C only sets a flag, which the loop acts on (ray.cancel)."""

    def __init__(
        self, jobs: Sequence[Job], n_jobs: int, resume: bool, progress: bool, address: str
    ) -> None:
        self.jobs, self.n_jobs, self.resume, self.progress = list(jobs), n_jobs, resume, progress
        self.address = address
        self.status: dict[int, str] = {}
        self.errors: dict[int, str] = {}
        self.running: dict[Any, int] = {}  # ObjectRef -> job index
        self.pending: list[int] = []
        self.stops = 0
        self.acted = 0  # Ctrl-Cs already acted on
        self.threads = 1

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.stops += 1

    def _connect(self, ray: Any) -> bool:
        """Connect unless this process already is; True when this call connected."""
        if ray.is_initialized():
            return False
        if self.address == "auto":  # RAY_ADDRESS, else the last `ray start` here, else start one
            ray.init(address=None, include_dashboard=False)
        else:
            ray.init(address=self.address)
        return True

    def _threads(self, ray: Any) -> int:
        total = int(ray.cluster_resources().get("CPU", 0))
        largest = max(
            (int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
            default=0,
        )
        return max(1, min(threads_per_job(self.n_jobs, cores=max(total, 1)), largest or 1))

    def _describe(self, bar: Any) -> None:
        n = len(self.jobs)
        what = "stopping" if self.stops else f"{len(self.running)} running"
        bar.set_description(f"{n} jobs x {self.threads} thread(s) on Ray: {what}, "
                            f"{len(self.status)}/{n} done", refresh=True)  # fmt: skip

    def _take(self, ray: Any, ref: Any, bar: Any) -> None:
        i = self.running.pop(ref)
        took = None
        try:
            status, error, took = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            status, error = "interrupted", ""
        except ray.exceptions.RayError as failure:  # a worker or node died, ...
            if self.stops > 1:  # killed by the second Ctrl-C (ray.cancel(force=True))
                status, error = "interrupted", ""
            else:
                status, error = "failed", f"{type(failure).__name__}: {failure}"
        self.status[i] = status
        if error:
            self.errors[i] = error
        when = f" ({took:.0f} s)" if took is not None else ""
        tqdm.write(f"{self.jobs[i].label()}: {status}{when}")
        bar.update(1)

    def run(self) -> dict[str, str]:
        ray = _import_ray()
        connected = self._connect(ray)
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        bar = tqdm(total=len(self.jobs), unit="job", disable=not self.progress,
                   dynamic_ncols=True)  # fmt: skip
        self.pending = list(range(len(self.jobs)))
        try:
            self.threads = self._threads(ray)
            task = ray.remote(_ray_job)
            while self.pending or self.running:
                while (self.pending and len(self.running) < self.n_jobs
                       and not (self.stops or self.errors)):  # fmt: skip
                    i = self.pending.pop(0)
                    job = self.jobs[i]
                    ref = task.options(num_cpus=self.threads, name=job.label()).remote(
                        job.config.to_toml(),
                        str(Path(job.out).absolute()),
                        self.resume,
                        self.threads,
                    )
                    self.running[ref] = i
                    self._describe(bar)
                if not self.running:
                    break  # stopping or failed: the pending jobs are not started
                if self.stops > self.acted:  # Ctrl-C: the first stops, the second kills
                    self.acted = self.stops
                    for ref in self.running:
                        ray.cancel(ref, force=self.stops > 1)
                    self._describe(bar)
                done, _ = ray.wait(list(self.running), num_returns=1, timeout=0.2)
                for ref in done:
                    self._take(ray, ref, bar)
                    self._describe(bar)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            for ref in self.running:  # only when this loop itself raised
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            bar.close()
            if connected:
                ray.shutdown()
        return _outcome(self.jobs, self.status, self.errors, self.stops, self.pending)


def _outcome(
    jobs: Sequence[Job],
    status: dict[int, str],
    errors: dict[int, str],
    stops: int,
    pending: Sequence[int],
) -> dict[str, str]:
    """How a pool of jobs ended: :class:`JobsFailed` naming every job that raised (with its
    traceback), KeyboardInterrupt after a Ctrl-C that stopped jobs or left some unstarted,
    else ``{job label: status}`` in the jobs' order."""
    if errors:
        text = "\n\n".join(f"{jobs[i].label()}:\n{e}" for i, e in errors.items())
        raise JobsFailed(
            f"{len(errors)} of {len(jobs)} jobs failed ({len(pending)} not started)\n\n{text}"
        )
    if (stops and pending) or "interrupted" in status.values():
        stopped = [jobs[i].label() for i, s in status.items() if s == "interrupted"]
        raise KeyboardInterrupt(
            f"stopped {len(stopped)} running job(s) with their checkpoints "
            f"({', '.join(stopped)}); {len(pending)} not started"
        )
    return {jobs[i].label(): status[i] for i in range(len(jobs))}


if __name__ == "__main__":
    sys.exit(_job_main())
