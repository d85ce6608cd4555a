"""The notebooks in analysis/ run in a real Jupyter kernel (nbclient + ipykernel, the way
Jupyter runs them) against small runs made here, so they cannot rot; they are committed without
outputs. The live-follow notebook is run against a run that another process is still writing,
and must see its new records.

Single-run notebooks read ``BIOGLOM_RUN``; the experiment notebooks read every run in the
folder ``BIOGLOM_RUNS`` (conftest's tiny runs: an unshared day-only arm with two seeds and a
shared arm with a night). The kernel inherits this process's environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_config

from bioglom.runs import open_run

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
NOTEBOOKS = sorted(ANALYSIS.glob("*.ipynb"))


def execute(path: Path, timeout: int = 300):
    """Run every cell of a notebook in a fresh python3 kernel started in its folder; a cell
    that raises fails the test with the cell and its traceback (nbclient's
    CellExecutionError). Returns the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ANALYSIS)}}
    )
    client.execute()
    return nb


def text_of(nb) -> str:
    """Every stream and text/plain output of an executed notebook, joined."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif "data" in o and "text/plain" in o["data"]:
                out.append(o["data"]["text/plain"])
    return "\n".join(out)


def test_notebooks_are_committed_without_outputs():
    """Every notebook's code cells have no outputs and no execution counts, and name the
    python3 kernel; the live-follow notebook is among them."""
    assert "follow_a_run.ipynb" in {p.name for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_a_kernel(notebook, tiny_runs, monkeypatch):
    """Every code cell runs without error in a Jupyter kernel on the tiny runs."""
    monkeypatch.setenv("BIOGLOM_RUN", str(tiny_runs / "b_seed0.h5"))
    monkeypatch.setenv("BIOGLOM_RUNS", str(tiny_runs))
    monkeypatch.setenv("BIOGLOM_FOLLOW_EVERY", "0.1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = execute(notebook)
    text = text_of(nb)
    if notebook.name == "day_night.ipynb":  # the groupby table: one column per arm
        assert re.search(r"arm\s+a\s+b\n", text) and "std" in text, text[-2000:]
    if notebook.name == "shared_vs_codistilled.ipynb":  # the pivot: arms a and b, levels 0-2
        assert re.search(r"\na\s+0\s", text) and re.search(r"\nb\s+0\s", text), text[-2000:]
    if notebook.name == "follow_a_run.ipynb":  # a finished run: one read, then it stops
        assert "status finished" in text


WRITER = """
import sys, time
from pathlib import Path
from bioglom.runs import RunWriter
path, stop, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
with RunWriter(path, config_text=config, seed=0, metrics=["loss", "probe_recon_mse"]) as w:
    u = 0
    while not stop.exists() and u < 2000:  # a record every 0.1 s until told to stop
        w.record(u, {"loss": 1.0 / (u + 1), "probe_recon_mse": 0.5 / (u + 1)}, phase="day")
        u += 1
        time.sleep(0.1)
    w.close(status="finished")
"""


@pytest.mark.slow
def test_follow_notebook_sees_records_written_by_another_process(tmp_path, monkeypatch):
    """A writer process appends a record every 0.1 s to a run it holds open; the live-follow
    notebook, run in a kernel on that file while it grows, re-reads it at every redraw and
    sees more records each time than the time before."""
    path, stop = tmp_path / "live.h5", tmp_path / "stop"
    config = small_config().to_toml()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop), config])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the file exists and holds a record
            if path.exists():
                try:
                    with open_run(path) as run:
                        if run.n_records >= 1:
                            break
                except (OSError, ValueError):
                    pass
            time.sleep(0.1)
        monkeypatch.setenv("BIOGLOM_RUN", str(path))
        monkeypatch.setenv("BIOGLOM_FOLLOW_EVERY", "0.5")
        monkeypatch.setenv("BIOGLOM_FOLLOW_TIMES", "5")
        nb = execute(ANALYSIS / "follow_a_run.ipynb")
    finally:
        stop.touch()
        writer.wait(timeout=60)
    text = text_of(nb)
    seen = re.search(r"records seen at each redraw: \[([\d, ]+)\]; status (\w+)", text)
    assert seen is not None, text[-2000:]
    counts = [int(v) for v in seen.group(1).split(",")]
    assert len(counts) == 5 and seen.group(2) == "running"  # it was still being written
    assert all(b > a for a, b in zip(counts, counts[1:], strict=False)), counts
    with open_run(path) as run:
        assert run.status == "finished" and run.n_records > counts[-1]
