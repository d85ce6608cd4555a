"""Runs as pandas tables (bioglom.frames, Run.frame, bioglom.runs.table, `bioglom runs`): every
cell is checked against the run file read with the plain numpy reader, and the best values
against a minimum or maximum taken here."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from bioglom.cli import main as cli_main
from bioglom.frames import metric_goal
from bioglom.runs import open_run, table

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def folder(tiny_runs, tmp_path_factory):
    """conftest's tiny runs (a_seed0, a_seed1 unshared; b_seed0 shared with a night), b_seed0
    copied into a sub-folder: ``a_seed0.h5``, ``a_seed1.h5``, ``sub/b_seed0.h5``."""
    root = tmp_path_factory.mktemp("runs")
    (root / "sub").mkdir()
    for name in ("a_seed0.h5", "a_seed1.h5"):
        shutil.copy(tiny_runs / name, root / name)
    shutil.copy(tiny_runs / "b_seed0.h5", root / "sub" / "b_seed0.h5")
    return root


def test_run_frame_is_the_records_indexed_by_update(folder):
    """Run.frame(): index = the records' updates (named update), one column per metric with
    the same values as Run.metrics, and the phase of each record."""
    with open_run(folder / "sub" / "b_seed0.h5") as run:
        frame, metrics, phase = run.frame(), run.metrics, run.phase
    steps = metrics.pop("step")
    assert frame.index.name == "update"
    np.testing.assert_array_equal(frame.index.to_numpy(), steps)
    assert list(frame["phase"]) == list(phase) and set(phase) == {"day", "night"}
    assert set(frame.columns) == {"phase", *metrics}
    for name, values in metrics.items():
        np.testing.assert_array_equal(frame[name].to_numpy(), values, err_msg=name)
    night = frame[frame["phase"] == "night"]
    assert list(night.index) == [4, 5]  # the two night updates after three days


def test_table_has_one_row_per_run_with_config_final_and_best(folder):
    """table(folder): one row per run file under the folder (sub-folders too), with the
    status, seed, last update, each config field under section.key, each metric's last
    record and, where the metric has a direction, its best record."""
    t = table(folder)
    assert sorted(t["run"]) == ["a_seed0", "a_seed1", "b_seed0"]
    for _, row in t.iterrows():
        with open_run(row["path"]) as run:
            metrics, config, status, seed = run.metrics, run.config, run.status, run.seed
        assert row["status"] == status == "finished" and row["seed"] == seed
        assert row["update"] == metrics["step"][-1] and row["records"] == len(metrics["step"])
        assert row["model.sharing"] == config.model.sharing
        assert row["train.updates"] == config.train.updates
        radius = config.attention.radius
        expected = json.dumps(radius, sort_keys=True) if isinstance(radius, list | dict) else radius
        assert row["attention.radius"] == expected
        for name, values in metrics.items():
            if name == "step":
                continue
            assert np.array_equal(row[name], values[-1], equal_nan=True), name
        loss = metrics["probe_recon_mse"]
        assert row["best_probe_recon_mse"] == np.nanmin(loss)
        if "probe_linear_acc" in metrics:
            assert row["best_probe_linear_acc"] == np.nanmax(metrics["probe_linear_acc"])
    assert "best_probe_islands_L0" not in t.columns  # a count has no direction
    means = t.groupby("model.sharing")["probe_recon_mse"].mean()
    assert set(means.index) == {"shared", "unshared"}
    unshared = t[t["model.sharing"] == "unshared"]["probe_recon_mse"].mean()
    assert means["unshared"] == pytest.approx(unshared)


def test_table_of_a_list_a_file_and_a_damaged_file(folder, tmp_path):
    """A list of files and folders reads each once in order; a file that is not a run is a row
    with status unreadable and the reason; a path that does not exist is an error naming it."""
    one = table([folder / "a_seed0.h5", folder / "sub"])
    assert list(one["run"]) == ["a_seed0", "b_seed0"]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    rows = table(tmp_path)
    assert list(rows["status"]) == ["unreadable"] and "bad.h5" in rows["error"][0]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        table(tmp_path / "nowhere")
    assert table(tmp_path / "bad.h5").shape[0] == 1


def test_metric_goal_by_name():
    """Lower is better for losses, errors and the ensemble ratio; higher for accuracies,
    FG-ARI, mIoU, nesting and agreement and their mismatched-image deltas; counts, cosines,
    norms and timing have no direction."""
    lower = ["loss", "loss_bu_L2", "probe_recon_mse", "probe_fill_mse", "probe_ensemble_L1",
             "probe_ensemble_others_L2"]  # fmt: skip
    higher = ["probe_linear_acc", "probe_fgari_obj_L3", "probe_dfgari_part_L0",
              "probe_ari_obj_L1", "probe_dmiou_obj_L2", "probe_wnesting_L0",
              "probe_dwnesting_L1", "probe_nesting_L0", "probe_agree_bu_L1"]  # fmt: skip
    neither = ["probe_islands_L0", "probe_island_size_L1", "probe_cos_L2", "probe_norm_L0",
               "probe_rank_L2", "elapsed_s", "update_norm_decoder", "probe_std_L1"]  # fmt: skip
    assert [metric_goal(n) for n in lower] == ["min"] * len(lower)
    assert [metric_goal(n) for n in higher] == ["max"] * len(higher)
    assert [metric_goal(n) for n in neither] == [None] * len(neither)


def test_cli_runs_sorts_best_first_and_names_unknown_columns(folder, capsys):
    """`bioglom runs FOLDER --sort METRIC` prints one line per run, best first (lowest error),
    the config fields that differ as columns; an unknown metric exits 2 naming it."""
    assert cli_main(["runs", str(folder), "--sort", "probe_recon_mse"]) == 0
    out = capsys.readouterr().out
    t = table(folder).sort_values("probe_recon_mse")
    lines = [line for line in out.splitlines() if "_seed" in line]
    assert [line.split()[0] for line in lines] == list(t["run"])
    assert "model.sharing" in out.splitlines()[0] and "3 runs" in out
    assert cli_main(["runs", str(folder), "--sort", "no_such_metric"]) == 2
    assert "no_such_metric" in capsys.readouterr().err
    csv = folder / "all.csv"
    assert cli_main(["runs", str(folder), "--csv", str(csv)]) == 0
    assert pd.read_csv(csv).shape == table(folder).shape


def test_without_pandas_the_error_names_the_extra(folder, monkeypatch, capsys):
    """With pandas missing, Run.frame and table raise ImportError naming the analysis extra,
    and `bioglom runs` exits 2 saying the same."""
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"\[analysis\]"):
        table(folder)
    with open_run(folder / "a_seed0.h5") as run, pytest.raises(ImportError, match="pandas"):
        run.frame()
    assert cli_main(["runs", str(folder)]) == 2
    assert "analysis" in capsys.readouterr().err
