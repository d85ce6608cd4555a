"""Tests of bioglom.runs: run files written by RunWriter and read back by open_run."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import fresh_seed

import bioglom.runs as runs
from bioglom.runs import Run, RunWriter, open_run

# A writer run in another process.
# argv = runs.py, path, seed, n_records, delay_s, signal_file, mode.
# It records metric "loss" = rng.random() and "acc" = step / 10 for steps 0..n-1, takes a
# snapshot at step 0, writes `signal_file` (with the record count) after the first record
# ("live" mode) or after the last one ("hang" mode, then sleeps until killed).
WRITER = textwrap.dedent(
    """
    import importlib.util, sys, time
    import numpy as np

    # load runs.py by its path, so the child does not import the whole package (torch)
    runs_py, path, seed, n, delay, signal_file, mode = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("bioglom_runs_child", runs_py)
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    RunWriter = runs.RunWriter
    seed, n, delay = int(seed), int(n), float(delay)
    rng = np.random.default_rng(seed)
    w = RunWriter(path, config_text="[run]\\nname = 'child'\\n", seed=seed,
                  metrics=["loss", "acc"], snapshots={"x": ((3,), "float32")})
    w.snapshot(0, {"x": np.arange(3, dtype="float32") + seed % 7})
    for step in range(n):
        w.record(step, {"loss": rng.random(), "acc": step / 10}, phase="day")
        if (mode == "live" and step == 0) or (mode == "hang" and step == n - 1):
            with open(signal_file + ".tmp", "w") as f:
                f.write(str(step + 1))
            import os; os.replace(signal_file + ".tmp", signal_file)
        time.sleep(delay)
    if mode == "hang":
        time.sleep(60)
    w.close("finished", summary={"final_loss": 0.5})
    """
)


def expected_child_metrics(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    loss = np.array([rng.random() for _ in range(n)])
    return {"step": np.arange(n), "loss": loss, "acc": np.arange(n) / 10}


def start_writer(tmp_path: Path, n: int, delay: float, mode: str) -> tuple:
    seed = fresh_seed()
    path = tmp_path / "child" / "run.h5"
    signal_file = tmp_path / "signal"
    args = [sys.executable, "-c", WRITER, runs.__file__, str(path), str(seed), str(n), str(delay)]
    proc = subprocess.Popen([*args, str(signal_file), mode])
    deadline = time.monotonic() + 20
    while not signal_file.exists():
        assert proc.poll() is None, "writer process died before signalling"
        assert time.monotonic() < deadline, "writer process never signalled"
        time.sleep(0.01)
    return proc, path, seed, int(signal_file.read_text())


def fresh_rng() -> np.random.Generator:
    return np.random.default_rng(fresh_seed())


def test_round_trip(tmp_path):
    """Everything written (metrics, phases, snapshots, probe, attrs, summary) reads back exactly,
    and a record that lacks a metric reads back NaN there."""
    rng = fresh_rng()
    K, N, B, d, Hg, Wg = 3, 5, 2, 4, 6, 7
    n, names = int(rng.integers(5, 30)), ["loss", "energy", "agreement"]
    steps = np.sort(rng.choice(10_000, size=n, replace=False))
    values = rng.normal(size=(n, len(names))) * 10.0 ** rng.integers(-5, 5, size=(n, len(names)))
    missing = rng.random((n, len(names))) < 0.2
    phases = rng.choice(["day", "night", "sleep_phase_16b!"], size=n)
    snap_at = sorted(rng.choice(steps, size=3, replace=False).tolist())
    states = [rng.normal(size=(K, N, B, d)) for _ in snap_at]
    islands = [rng.integers(0, 100, size=(K, B, Hg, Wg)) for _ in snap_at]
    probe = {
        "images": rng.random((B, 3, 8, 8)).astype(np.float32),
        "masks": rng.integers(0, 4, (B, 8, 8)),
    }
    config_text = f"[model]\nd = {d}\n# {rng.random()}\n"
    seed = int(rng.integers(0, 2**31))

    path = tmp_path / "a" / "b" / "run.h5"  # parent dirs do not exist yet
    w = RunWriter(
        path,
        config_text=config_text,
        seed=seed,
        metrics=names,
        snapshots={"state": ((K, N, B, d), "float16"), "islands": ((K, B, Hg, Wg), np.int32)},
        probe=probe,
        attrs={"name": "trial", "levels": K, "lr": 1e-3, "sleep": True},
        versions={"torch": "9.9.9"},
    )
    for i in range(n):
        row = {name: values[i, j] for j, name in enumerate(names) if not missing[i, j]}
        w.record(int(steps[i]), row, phase=str(phases[i]))
        if steps[i] in snap_at:
            k = snap_at.index(steps[i])
            w.snapshot(int(steps[i]), {"state": states[k], "islands": islands[k]})
    assert w.n_records == n
    w.close("diverged", summary={"loss": float(values[-1, 0]), "nan": float("nan")})
    w.close("finished")  # idempotent: the first status stays

    with open_run(path) as run:
        assert isinstance(run, Run)
        m = run.metrics
        assert set(m) == {"step", *names}
        assert m["step"].dtype == np.int64
        np.testing.assert_array_equal(m["step"], steps)
        np.testing.assert_array_equal(run.steps, steps)
        expected = np.where(missing, np.nan, values)
        for j, name in enumerate(names):
            assert m[name].dtype == np.float64
            np.testing.assert_array_equal(m[name], expected[:, j])  # NaN == NaN here
            np.testing.assert_array_equal(run.metric(name), expected[:, j])
        assert run.n_records == n
        assert run.phase.tolist() == phases.tolist()

        np.testing.assert_array_equal(run.snapshot_steps, snap_at)
        assert sorted(run.snapshot_names) == ["islands", "state"]
        for k, step in enumerate(snap_at):
            snap = run.snapshot(step)
            assert snap["state"].dtype == np.float16
            np.testing.assert_array_equal(snap["state"], states[k].astype(np.float16))
            assert snap["islands"].dtype == np.int32
            np.testing.assert_array_equal(snap["islands"], islands[k])
        got_probe = run.probe
        assert set(got_probe) == set(probe)
        for name, a in probe.items():
            np.testing.assert_array_equal(got_probe[name], a)

        assert run.status == "diverged"
        assert run.seed == seed
        assert run.config_text == config_text
        v = run.versions
        assert (
            v["torch"] == "9.9.9" and v["numpy"] == np.__version__ and v["h5py"] == h5py.__version__
        )
        assert "python" in v
        s = run.summary
        assert s["loss"] == values[-1, 0] and np.isnan(s["nan"])
        a = run.attrs
        assert a["format"] == "bioglom-run/1"
        assert (a["name"], a["levels"], a["lr"], a["sleep"]) == ("trial", K, 1e-3, True)
        assert isinstance(a["created"], str) and isinstance(a["finished"], str)
        assert a["created"] <= a["finished"]
        assert (
            str(path) in repr(run) and "diverged" in repr(run) and str(int(steps[-1])) in repr(run)
        )


def test_resume_refuses_a_run_that_declares_other_metrics(tmp_path):
    """A run written by another version of bioglom (another set of metrics) is not resumed: one
    line naming the missing metrics, and the file keeps its records and status."""
    path = tmp_path / "run.h5"
    with RunWriter(path, config_text="a", seed=1, metrics=["x", "y"]) as w:
        w.record(0, {"x": 1.0, "y": 2.0})
    with pytest.raises(runs.RunFileError, match=r"lacks probe_dfgari_obj_L0 \(1\)"):
        RunWriter.reopen(path, 1, 0, metrics=["x", "y", "probe_dfgari_obj_L0"])
    with open_run(path) as run:
        assert run.n_records == 1 and run.status == "finished"
    w = RunWriter.reopen(path, 1, 0, metrics=["y", "x"])  # the same names resume
    w.record(1, {"x": 3.0})
    w.close()
    with open_run(path) as run:
        assert list(run.metrics["x"]) == [1.0, 3.0]


def test_refuses_to_overwrite(tmp_path):
    """An existing run file is kept unless overwrite=True, which replaces it with a fresh run."""
    path = tmp_path / "run.h5"
    with RunWriter(path, config_text="a", seed=1, metrics=["x"]) as w:
        w.record(0, {"x": 1.0})
    with pytest.raises(FileExistsError, match="overwrite=True") as e:
        RunWriter(path, config_text="b", seed=2, metrics=["x"])
    assert str(path) in str(e.value)
    with open_run(path) as run:
        assert run.config_text == "a" and run.n_records == 1
    with RunWriter(path, config_text="b", seed=2, metrics=["y"], overwrite=True):
        pass
    with open_run(path) as run:
        assert run.config_text == "b" and run.seed == 2 and run.n_records == 0
        assert set(run.metrics) == {"step", "y"}


def test_undeclared_metric_raises_keyerror(tmp_path):
    """Recording a metric not declared at creation raises KeyError listing the declared names,
    and writes nothing."""
    with RunWriter(tmp_path / "r.h5", config_text="", seed=0, metrics=["loss", "acc"]) as w:
        with pytest.raises(KeyError, match=r"loss.*acc"):
            w.record(0, {"loss": 1.0, "los": 2.0})
        assert w.n_records == 0
    with open_run(tmp_path / "r.h5") as run:
        assert run.n_records == 0
        with pytest.raises(KeyError, match="loss"):
            run.metric("los")


def test_long_phase_raises_valueerror(tmp_path):
    """A phase longer than 16 bytes is refused rather than silently truncated."""
    with RunWriter(tmp_path / "r.h5", config_text="", seed=0, metrics=["x"]) as w:
        with pytest.raises(ValueError, match="16"):
            w.record(0, {"x": 1.0}, phase="a" * 17)


def test_wrong_snapshot_shape_raises_valueerror(tmp_path):
    """A snapshot array of the wrong shape raises ValueError naming the array and both shapes."""
    snaps = {"state": ((2, 3), "float16"), "islands": ((4,), "int64")}
    with RunWriter(tmp_path / "r.h5", config_text="", seed=0, metrics=[], snapshots=snaps) as w:
        with pytest.raises(ValueError, match=r"islands.*\(5,\).*\(4,\)"):
            w.snapshot(0, {"state": np.zeros((2, 3)), "islands": np.zeros(5)})
        with pytest.raises(ValueError, match="islands"):
            w.snapshot(0, {"state": np.zeros((2, 3))})
        assert w.n_snapshots == 0


def test_unknown_snapshot_step_raises_keyerror(tmp_path):
    """Asking for a snapshot at a step that has none raises KeyError listing the steps there are."""
    with RunWriter(
        tmp_path / "r.h5", config_text="", seed=0, metrics=[], snapshots={"s": ((2,), "f4")}
    ) as w:
        w.snapshot(10, {"s": np.ones(2)})
        w.snapshot(20, {"s": np.ones(2)})
    with open_run(tmp_path / "r.h5") as run, pytest.raises(KeyError, match=r"\[10, 20\]"):
        run.snapshot(15)


def test_context_manager_marks_failed_and_interrupted(tmp_path):
    """An exception escaping the writer's with-block marks the run "failed" (KeyboardInterrupt:
    "interrupted") and still propagates; the records written before it are kept."""
    for exc, status in [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")]:
        path = tmp_path / f"{status}.h5"
        with pytest.raises(type(exc)):
            with RunWriter(path, config_text="", seed=0, metrics=["x"]) as w:
                w.record(3, {"x": 0.5})
                raise exc
        with open_run(path) as run:
            assert run.status == status
            assert run.steps.tolist() == [3]
            assert run.summary is None


def test_open_run_errors(tmp_path):
    """open_run raises FileNotFoundError naming a missing path, and ValueError for an HDF5 file
    that is not a bioglom run and for a file that is not HDF5 at all."""
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        open_run(missing)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a bioglom run"):
        open_run(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError):
        open_run(tmp_path / "text.h5")


def test_reader_in_same_process_follows_writer(tmp_path):
    """A reader in the writer's own process sees new records as they are flushed, and sees
    the final status once the writer has closed, even though it held the file throughout."""
    path = tmp_path / "r.h5"
    w = RunWriter(path, config_text="", seed=0, metrics=["x"])
    w.record(0, {"x": 1.0})
    run = open_run(path)
    assert run.n_records == 1 and run.status == "running"
    w.record(1, {"x": 2.0})
    np.testing.assert_array_equal(run.metric("x"), [1.0, 2.0])
    w.close(summary={"x": 2.0})
    assert run.status == "finished" and run.summary == {"x": 2.0}
    run.close()


def test_reader_follows_writer_in_another_process(tmp_path):
    """A reader opened while another process is writing sees the records grow on successive
    reads and status "running"; holding the file does not stop the writer from closing; after
    it, the reader (re-opened) sees every record and status "finished"."""
    n = 40
    proc, path, seed, _ = start_writer(tmp_path, n=n, delay=0.05, mode="live")
    expected = expected_child_metrics(seed, n)
    try:
        run = open_run(path)
        n1 = run.n_records
        assert run.status == "running"
        deadline = time.monotonic() + 5
        while run.n_records == n1 and time.monotonic() < deadline:
            time.sleep(0.05)
        m = run.metrics
        n2 = len(m["step"])
        assert run.status == "running"
        assert proc.poll() is None, "writer finished too early for this test"
        assert 1 <= n1 < n2 < n
        for name, a in expected.items():  # what is visible is a correct, aligned prefix
            np.testing.assert_array_equal(m[name], a[:n2])
        assert proc.wait(timeout=20) == 0
        run.refresh()
        assert run.status == "finished" and run.n_records == n
        run.close()
    finally:
        proc.kill()
        proc.wait()
    with open_run(path) as run:
        assert run.status == "finished"
        assert run.summary == {"final_loss": 0.5}
        m = run.metrics
        for name, a in expected.items():
            np.testing.assert_array_equal(m[name], a)
        assert run.phase.tolist() == ["day"] * n
        np.testing.assert_array_equal(run.snapshot(0)["x"], np.arange(3) + seed % 7)


def test_file_of_killed_writer_keeps_flushed_records(tmp_path):
    """After the writer process is killed with SIGKILL, the file still opens, holds every record
    flushed before the kill, and its status stays "running"."""
    proc, path, seed, n = start_writer(
        tmp_path, n=int(fresh_rng().integers(3, 25)), delay=0.0, mode="hang"
    )
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    with open_run(path) as run:
        assert run.status == "running"
        assert "finished" not in run.attrs
        m = run.metrics
        for name, a in expected_child_metrics(seed, n).items():
            np.testing.assert_array_equal(m[name], a)
        np.testing.assert_array_equal(run.snapshot_steps, [0])
        np.testing.assert_array_equal(run.snapshot(0)["x"], np.arange(3) + seed % 7)
        assert json.loads(run.attrs["versions"]) == run.versions


def test_reopen_keeps_the_first_records_and_clears_the_end_of_the_last_session(tmp_path):
    """`RunWriter.reopen` (used by --resume) keeps the records and snapshots its checkpoint saw,
    drops later ones, and removes what the previous close wrote (finished time, summary,
    divergence attrs); the file is `running` again."""
    path = tmp_path / "r.h5"
    w = RunWriter(path, config_text="", seed=0, metrics=["a"], snapshots={"s": ((2,), "float32")})
    for i in range(4):
        w.record(i, {"a": float(i)}, phase="day")
    w.snapshot(0, {"s": np.zeros(2)})
    w.snapshot(3, {"s": np.ones(2)})
    w.close("diverged", summary={"a": 3.0}, attrs={"diverged_at": 3, "diverged_tensor": "a"})
    w = RunWriter.reopen(path, n_records=2, n_snapshots=1)
    w.record(2, {"a": 20.0}, phase="night")
    w.close("finished")
    with open_run(path) as run:
        assert list(run.steps) == [0, 1, 2] and list(run.metrics["a"]) == [0.0, 1.0, 20.0]
        assert list(run.snapshot_steps) == [0] and list(run.phase) == ["day", "day", "night"]
        assert run.status == "finished" and run.summary is None
        assert "diverged_at" not in run.attrs and "resumed" in run.attrs


# A reader run in another process, so that a hang inside HDF5 fails the test (timeout) instead
# of stopping the test session. argv = runs.py, path, ...; opens each file and reads its metrics
# and snapshots; prints {path: [error type, message, seconds]} as JSON ("ok" where all was read).
READER = textwrap.dedent(
    """
    import importlib.util, json, sys, time

    runs_py, *paths = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("bioglom_runs_child", runs_py)
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    out = {}
    for path in paths:
        t = time.monotonic()
        try:
            with runs.open_run(path) as run:
                run.metrics
                for step in run.snapshot_steps:
                    run.snapshot(int(step))
            what = ["ok", ""]
        except Exception as e:
            what = [type(e).__name__, str(e)]
        out[path] = [*what, time.monotonic() - t]
    print(json.dumps(out))
    """
)


def small_run_bytes(tmp_path: Path) -> bytes:
    """The bytes of a small finished run (fixed seed), about 100 kB."""
    rng = np.random.default_rng(12)
    path = tmp_path / "whole.h5"
    with RunWriter(
        path, config_text="", seed=12, metrics=["x"], snapshots={"s": ((64, 64), "float32")}
    ) as w:
        for i in range(20):
            w.record(i, {"x": rng.random()})
            w.snapshot(i, {"s": rng.random((64, 64))})
    data = path.read_bytes()
    path.unlink()
    return data


def test_damaged_and_foreign_files_fail_at_once_with_one_line(tmp_path):
    """open_run on a run cut to half its size, a file of random bytes, an empty file, a run
    whose superblock checksum is broken, and an HDF5 file written by another program (h5py,
    no 'format' attribute) raises RunFileError (a ValueError) within seconds -- not after HDF5's
    SWMR read retries -- with one line that starts with the path and says what is wrong."""
    whole = small_run_bytes(tmp_path)
    files = {
        "half.h5": (whole[: len(whole) // 2], f"truncated (file is {len(whole) // 2:,} bytes"),
        "junk.h5": (np.random.default_rng(3).bytes(4096), "not an HDF5 file"),
        "empty.h5": (b"", "not an HDF5 file (it is empty)"),
        # byte 20 is in the superblock's extension address: its checksum no longer matches
        "checksum.h5": (whole[:20] + bytes([whole[20] ^ 1]) + whole[21:], "damaged"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    files["other.h5"] = (b"", "an HDF5 file but not a bioglom run (no 'format' attribute)")
    paths = [str(tmp_path / name) for name in files]
    proc = subprocess.run(
        [sys.executable, "-c", READER, runs.__file__, *paths],
        capture_output=True,
        text=True,
        timeout=180,  # a generous bound for a loaded machine: the old reader hung for hours
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for path, (name, (_, fragment)) in zip(paths, files.items(), strict=True):
        kind, message, seconds = result[path]
        assert kind == "RunFileError", (name, kind, message)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert fragment in message, (name, message)
        assert seconds < 30, (name, seconds)  # the old reader hung for hours
    assert issubclass(runs.RunFileError, ValueError)


def test_a_short_file_that_grows_is_not_called_truncated(tmp_path):
    """A live writer may have written the superblock before the data it accounts for; a file
    marked open for writing that is shorter than its superblock says, and reaches that length
    within the wait, opens normally with every record."""
    import threading

    proc, path, _, n = start_writer(tmp_path, n=20, delay=0.0, mode="hang")
    proc.send_signal(signal.SIGKILL)  # leaves the file marked open for SWMR writing
    assert proc.wait(timeout=10) == -signal.SIGKILL
    whole = path.read_bytes()
    assert whole[11] != 0
    path.write_bytes(whole[: len(whole) // 2])

    def grow():
        time.sleep(0.2)
        with open(path, "r+b") as f:
            f.seek(len(whole) // 2)
            f.write(whole[len(whole) // 2 :])

    thread = threading.Thread(target=grow)
    thread.start()
    try:
        with open_run(path) as run:
            np.testing.assert_array_equal(run.steps, np.arange(n))
    finally:
        thread.join()


def test_a_killed_writers_file_cut_short_is_read_or_refused_at_once(tmp_path):
    """A run whose writer was killed (still marked open for writing) and which was then cut to
    half its size is left to HDF5 after a short wait (a live writer's file may be short for a
    moment): opening and reading it ends within seconds with an error (it is not read as a
    whole run), and a RunFileError says it is truncated."""
    proc, path, _, _ = start_writer(tmp_path, n=30, delay=0.0, mode="hang")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    data = path.read_bytes()
    assert data[11] != 0  # superblock v3 flags: still open for (SWMR) writing
    path.write_bytes(data[: len(data) // 2])
    proc = subprocess.run(
        [sys.executable, "-c", READER, runs.__file__, str(path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    kind, message, seconds = json.loads(proc.stdout)[str(path)]
    assert seconds < 30
    assert kind in ("RunFileError", "OSError", "RuntimeError"), (kind, message)
    if kind == "RunFileError":
        assert message.startswith(f"{path}: truncated (file is {len(data) // 2:,} bytes")
