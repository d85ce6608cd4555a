"""The notebooks in analysis/ run headlessly against small runs made here, so they cannot rot.

Single-run notebooks read ``BIOGLOM_RUN``; the experiment notebooks read every run in the
folder ``BIOGLOM_RUNS`` (here: a day-only unshared run and a shared run with a night).

Their code cells are executed in order in one namespace (matplotlib's Agg backend), which is
what a kernel would do, without needing Jupyter installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_config

from bioglom.train import train

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "analysis").glob("*.ipynb"))


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nb")
    train(small_config(train__updates=2, run__record_every=1), folder / "a.h5", progress=False)
    config = small_config(
        model__sharing="shared", schedule__phases="day 2, night 1", run__record_every=1
    )
    train(config, folder / "b.h5", progress=False)
    return folder


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_has_no_outputs(notebook, small_runs, monkeypatch):
    """Every code cell runs without error on a fresh run; the file is committed without outputs."""
    import matplotlib.pyplot as plt

    nb = json.loads(notebook.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells)
    monkeypatch.setenv("BIOGLOM_RUN", str(small_runs / "a.h5"))
    monkeypatch.setenv("BIOGLOM_RUNS", str(small_runs))
    monkeypatch.chdir(notebook.parent)
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(cells):
        code = "".join(cell["source"])
        exec(compile(code, f"{notebook.name}[cell {i}]", "exec"), namespace)
    plt.close("all")
