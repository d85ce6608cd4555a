"""The notebooks in analysis/ run headlessly against a small run made here, so they cannot rot.

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
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "run.h5"
    train(small_config(train__updates=2, run__record_every=1), out, progress=False)
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_has_no_outputs(notebook, small_run, monkeypatch):
    """Every code cell runs without error on a fresh run; the file is committed without outputs."""
    import matplotlib.pyplot as plt

    nb = json.loads(notebook.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells)
    monkeypatch.setenv("BIOGLOM_RUN", str(small_run))
    monkeypatch.chdir(notebook.parent)
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(cells):
        code = "".join(cell["source"])
        exec(compile(code, f"{notebook.name}[cell {i}]", "exec"), namespace)
    plt.close("all")
