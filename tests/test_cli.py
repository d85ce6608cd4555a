"""The command line: a run end to end, and bad configs that exit 2 with one line, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL

from bioglom.cli import main
from bioglom.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "default.toml"
TINY = [f"--set={k}={v}" for k, v in SMALL.items()] + ["--set=train.updates=3", "--quiet"]


def test_run_trains_and_prints_a_summary(tmp_path, capsys):
    """`bioglom run CONFIG --out PATH` trains, writes an .h5 that open_run reads, and prints
    where it is and the final metrics."""
    out = tmp_path / "run.h5"
    assert main(["run", str(DEFAULT), "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert f"run: {out}" in text and "status: finished" in text
    assert "probe_recon_mse" in text and "islands/img" in text and "obj FG-ARI" in text
    assert "obj delta" in text and "part delta" in text and "wnest delta" in text
    header = next(line for line in text.splitlines() if "obj delta" in line)
    assert header.split()[1:3] == ["obj", "delta"]  # the control leads the islands table
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    for name in ("fixed_blocks", "kmeans_position", "foreground_components", "kmeans_pixels"):
        assert name in rows  # a row per baseline that learns nothing (its values: test_scores)
    with open_run(out) as run:
        assert run.status == "finished" and run.steps[-1] == 3
        assert run.config.model.levels == 3
    assert main(["info", str(out)]) == 0
    assert "rule codistill" in capsys.readouterr().out


def test_run_refuses_to_overwrite(tmp_path, capsys):
    """An existing run file is never replaced without --overwrite (exit 2, one line)."""
    out = tmp_path / "run.h5"
    out.write_bytes(b"")
    assert main(["run", str(DEFAULT), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "\n" not in err
    assert main(["run", str(DEFAULT), "--out", str(out), "--overwrite", *TINY]) == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "model.levls=3"], "model.levls = 3: unknown field; did you mean 'levels'?"),
        (["--set", "model.dim=abc"], "model.dim = 'abc': expected an integer"),
        (["--set", "model.dim=0"], "model.dim = 0: expected an integer in [1, 4096]"),
        (["--set", "consensus.mode=median"], "consensus.mode = 'median': expected one of"),
        (["--set", "data.source=file", "--set", "data.path=/nope.h5"], "data.path = '/nope.h5'"),
        (["--set", "oops"], "--set = 'oops': expected section.key=value"),
    ],
)
def test_bad_config_exits_2_with_one_line(args, fragment, tmp_path, capsys):
    """Unknown key, wrong type, out-of-range value or a missing data file: exit status 2 and a
    single line naming the field, the value and what is allowed."""
    assert main(["run", str(DEFAULT), "--out", str(tmp_path / "x.h5"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("bioglom: config error: ")
    assert fragment in err
    assert not (tmp_path / "x.h5").exists()


def test_missing_config_file(tmp_path, capsys):
    """A config path that does not exist is a config error, exit 2."""
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_prints_no_traceback(tmp_path):
    """The installed `bioglom` command exits 2 on a bad value with no Python traceback."""
    exe = shutil.which("bioglom") or str(Path(sys.executable).parent / "bioglom")
    proc = subprocess.run(
        [exe, "run", str(DEFAULT), "--set", "model.levels=99", "--out", str(tmp_path / "x.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "bioglom: config error: model.levels = 99: expected an integer in [2, 16]"
    )


def test_config_command_prints_a_loadable_documented_config(tmp_path, capsys):
    """`bioglom config` prints TOML with comments that loads back to the same config."""
    from bioglom.config import load_config

    assert main(["config", str(DEFAULT), "--set", "model.dim=12"]) == 0
    text = capsys.readouterr().out
    assert "# embedding dimension d" in text
    p = tmp_path / "c.toml"
    p.write_text(text)
    assert load_config(p) == load_config(DEFAULT, ["model.dim=12"])
    assert main(["config", "--markdown"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("# Configuration reference") and "| `model.dim` | `32` |" in page
    assert main(["config", str(DEFAULT), "--markdown"]) == 2  # the reference is of the defaults


def test_resume_options_and_exit_statuses(tmp_path, capsys, monkeypatch):
    """`--resume` needs `--out` and excludes `--overwrite` (exit 2, one line each); a run
    stopped by Ctrl-C exits 130 and `--resume` finishes it (exit 0); a diverged run is not
    resumed (exit 2, saying where it diverged) and exits 3 when it diverges."""
    import os
    import signal

    import torch

    import bioglom.train as train_module

    out = tmp_path / "run.h5"
    tiny = [*TINY, "--set=train.updates=6", "--set=run.checkpoint_every=2"]
    assert main(["run", str(DEFAULT), "--resume", *tiny]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert main(["run", str(DEFAULT), "--out", str(out), "--resume", "--overwrite", *tiny]) == 2
    assert "exclude each other" in capsys.readouterr().err

    real = train_module.make_rule

    def hooked(what):
        def make(model, config):
            rule = real(model, config)
            update, calls = rule.update, {"n": 0}

            def hit(images, generator=None):
                calls["n"] += 1
                result = update(images, generator)
                if calls["n"] == 3 and what == "sigint":
                    os.kill(os.getpid(), signal.SIGINT)
                if calls["n"] == 3 and what == "nan":
                    result["loss"] = torch.tensor(float("nan"))
                return result

            rule.update = hit
            return rule

        return make

    with monkeypatch.context() as m:
        m.setattr(train_module, "make_rule", hooked("sigint"))
        assert main(["run", str(DEFAULT), "--out", str(out), *tiny]) == 130
    assert main(["run", str(DEFAULT), "--out", str(out), "--resume", *tiny]) == 0
    with open_run(out) as run:
        assert run.status == "finished"

    bad = tmp_path / "bad.h5"
    with monkeypatch.context() as m:
        m.setattr(train_module, "make_rule", hooked("nan"))
        assert main(["run", str(DEFAULT), "--out", str(bad), *tiny]) == 3
    capsys.readouterr()
    assert main(["run", str(DEFAULT), "--out", str(bad), "--resume", *tiny]) == 2
    err = capsys.readouterr().err.strip()
    assert "diverged at update 3" in err and "\n" not in err


def _damaged_run_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A file `bioglom info` must refuse, and what its one line must say."""
    import h5py
    import numpy as np

    from bioglom.runs import RunWriter

    path = tmp_path / f"{kind}.h5"
    rng = np.random.default_rng(5)
    if kind == "truncated":  # a run cut to half its size (an interrupted copy, a full disk)
        with RunWriter(path, config_text="", seed=5, metrics=["x"]) as w:
            for i in range(50):
                w.record(i, {"x": rng.random()})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, f"{path}: truncated (file is {len(data) // 2:,} bytes, the HDF5 superblock"
    if kind == "junk":
        path.write_bytes(rng.bytes(2000))
        return path, f"{path}: not an HDF5 file"
    with h5py.File(path, "w") as f:  # another program's HDF5 file
        f["x"] = rng.random(3)
    return path, f"{path}: an HDF5 file but not a bioglom run (no 'format' attribute)"


@pytest.mark.parametrize("kind", ["truncated", "junk", "other"])
def test_info_on_a_damaged_or_foreign_file_exits_2_at_once(kind, tmp_path):
    """`bioglom info` on a truncated run, a file of junk or another program's HDF5 file ends
    within seconds (no hang in HDF5's SWMR retries) with exit status 2 and one line saying what
    is wrong with the file, no traceback."""
    path, expected = _damaged_run_file(tmp_path, kind)
    exe = shutil.which("bioglom") or str(Path(sys.executable).parent / "bioglom")
    # a generous bound (interpreter and torch start-up on a loaded machine): the hang was hours
    proc = subprocess.run([exe, "info", str(path)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and err.startswith(f"bioglom: error: {expected}"), err


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"images = [[0.5]]\n", "not an .npz archive (not a zip file, which np.savez writes)"),
        (b"", "not an .npz archive (the file is empty)"),
        (b"PK\x03\x04" + bytes(60), "a damaged or truncated .npz archive"),
    ],
)
def test_a_data_file_that_is_not_an_npz_archive_exits_2(content, fragment, tmp_path, capsys):
    """A `.npz` data file that is not a zip archive (text, empty, a cut-off download) is a config
    error naming data.path and saying so in one line, exit 2 -- not numpy's "contains pickled
    data"."""
    data = tmp_path / "data.npz"
    data.write_bytes(content)
    out = tmp_path / "x.h5"
    args = ["--set", "data.source=file", "--set", f"data.path={data}", "--out", str(out)]
    assert main(["run", str(DEFAULT), *args, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"bioglom: config error: data.path = '{data}': ")
    assert fragment in err and "pickle" not in err
    assert not out.exists()
