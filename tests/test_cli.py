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
