"""Config loading, overrides, TOML round trip and one-line errors naming field, value, allowed."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config

import bioglom
from bioglom.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_from_toml,
    documented_markdown,
    field_docs,
    load_config,
    per_level,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "default.toml"


def test_defaults_are_valid_and_round_trip_through_toml():
    """The default config validates, and to_toml -> config_from_toml gives an equal config."""
    cfg = Config().validate()
    again = config_from_toml(cfg.to_toml())
    assert again == cfg
    assert tomllib.loads(cfg.to_toml())["model"]["levels"] == cfg.model.levels


def test_default_toml_lists_every_field_with_its_default():
    """experiments/default.toml documents every config field, at the dataclass default."""
    data = tomllib.loads(DEFAULT.read_text())
    listed = {f"{s}.{k}" for s, sec in data.items() for k in sec}
    assert listed == set(field_docs())
    assert load_config(DEFAULT) == Config().validate()


def test_overrides_parse_toml_values_and_bare_strings():
    """--set values are read as TOML (numbers, booleans, lists), else as plain strings."""
    cfg = load_config(
        DEFAULT,
        [
            "model.dim=16",
            "consensus.mode=gaussian",
            "attention.include_self=false",
            "attention.radius=[1, 1, 2, 2]",
            "consensus.weights_start.lateral=0",
            "train.lr=3e-4",
        ],
    )
    assert cfg.model.dim == 16
    assert cfg.consensus.mode == "gaussian"
    assert cfg.attention.include_self is False
    assert cfg.attention.radius == [1, 1, 2, 2]
    assert cfg.consensus.weights_start["lateral"] == 0.0
    assert cfg.consensus.weights_start["bottom_up"] == 1.0  # untouched keys keep defaults
    assert cfg.train.lr == pytest.approx(3e-4)
    assert load_config(overrides={"model.levels": 3}).model.levels == 3


def test_per_level_expands_scalars_and_keeps_lists():
    """A scalar per-level value applies to every level; a list gives one value per level."""
    assert per_level(2, 3) == [2, 2, 2]
    assert per_level([1, 2, 3], 3) == [1, 2, 3]
    assert per_level({"first": 1, "step": 2}, 3) == [1, 3, 5]


def test_a_table_subkey_override_keeps_the_other_keys():
    """--set attention.radius.first=2 changes one key of the default table, keeping step."""
    cfg = load_config(overrides=["attention.radius.first=2"])
    assert cfg.attention.radius == {"first": 2, "step": 1}


def test_per_level_tables_scale_with_the_number_of_levels():
    """The default radius grows with the level, so changing model.levels needs nothing else."""
    cfg = load_config(overrides={"model.levels": 6})
    assert per_level(cfg.attention.radius, 6) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ConfigError, match="at some level gives -1"):
        load_config(overrides={"attention.radius.first": 1, "attention.radius.step": -1})


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        (["model.dimm=3"], "model.dimm", "did you mean 'dim'"),
        (["modle.dim=3"], "modle", "did you mean 'model'"),
        (["model.levels=1"], "model.levels", "integer in [2, 16]"),
        (["model.levels=2.5"], "model.levels", "integer"),
        (["model.levels=true"], "model.levels", "integer"),
        (['model.dim="32"'], "model.dim", "integer"),
        (["model.sharing=half"], "model.sharing", "'shared', 'unshared'"),
        (["train.lr=0"], "train.lr", "in (0.0, 10.0]"),
        (["train.lr=nan"], "train.lr", "finite"),
        (["attention.include_self=1"], "attention.include_self", "true or false"),
        (["attention.radius=[1, 2]"], "attention.radius", "model.levels = 4"),
        (["attention.radius=[1, -2, 3, 4]"], "attention.radius", "one value per level"),
        (["consensus.weights_end.sideways=1"], "consensus.weights_end.sideways", "unknown"),
        (["consensus.weights_end.lateral=-1"], "consensus.weights_end.lateral", ">= 0"),
        (["data.min_objects=3", "data.max_objects=2"], "data.min_objects", "max_objects"),
        (["data.image_size=31"], "data.image_size", "multiple of frontend.patch_size"),
        (["data.source=file"], "data.path", "expected a file"),
        (["data.source=file", "data.path=/no/such.npz"], "data.path", "no such file"),
        (["run.device=gpu"], "run.device", "'cpu', 'cuda'"),
        (
            ["attention.include_self=false", "attention.radius=0"],
            "attention.radius",
            "attend to nobody",
        ),
        (
            ["attention.neighbourhood=gaussian", "attention.samples=300"],
            "attention.samples",
            "at most N - 1 = 255",
        ),
        (["train.batch_size=4096"], "train.batch_size", "data.n_train"),
        (
            [
                "consensus.weights_end.bottom_up=0",
                "consensus.weights_end.previous=0",
                "consensus.weights_end.lateral=0",
            ],
            "consensus.weights_end",
            "top level has no top-down",
        ),
        (["model.dim=1", "model.state_norm=layer"], "model.dim", "state_norm = 'layer'"),
    ],
)
def test_bad_values_name_field_value_and_allowed(overrides, field, fragment):
    """Each bad value raises ConfigError whose one-line message starts with the field name and
    says what is allowed."""
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT, overrides)
    err = info.value
    assert err.field == field
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(field)
    assert fragment in msg


def test_missing_and_broken_config_files(tmp_path):
    """A missing file or a file that is not TOML is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlevels = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_section_that_is_not_a_table():
    """`model = 3` at the top level is rejected, not crashed on."""
    with pytest.raises(ConfigError, match="expected a table"):
        config_from_dict({"model": 3})


def test_relative_data_path_resolves_against_the_config_file(tmp_path):
    """data.path in a config file is relative to that file's folder."""
    sub = tmp_path / "exp"
    sub.mkdir()
    np.savez(sub / "imgs.npz", images=np.zeros((4, 1, 8, 8), np.float32))
    cfg_file = sub / "c.toml"
    cfg_file.write_text('[data]\nsource = "file"\npath = "imgs.npz"\n[train]\nbatch_size = 2\n')
    cfg = load_config(cfg_file)
    assert Path(cfg.data.path) == sub / "imgs.npz"


def test_configuration_reference_is_generated_from_the_fields():
    """docs/configuration.md is exactly what the fields' own docs and defaults generate
    (`bioglom config --markdown`), so it cannot go stale; it names every field with its default
    as default.toml writes it."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == documented_markdown(), (
        "docs/configuration.md is stale: bioglom config --markdown > docs/configuration.md"
    )
    defaults = tomllib.loads(Config().to_toml())
    for key, doc in field_docs().items():
        section, name = key.split(".")
        row = next(line for line in page.splitlines() if line.startswith(f"| `{key}` |"))
        assert tomllib.loads(f"v = {row.split('`')[3]}")["v"] == defaults[section][name], key
        assert doc.replace("|", "\\|") in row, key


def test_every_field_has_a_doc_and_a_check():
    """Every field carries one-line documentation and a validator (docs/configuration.md
    uses them)."""
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(
            section.type if isinstance(section.type, type) else getattr(Config(), section.name)
        ):
            assert f.metadata.get("doc"), f.name
            assert callable(f.metadata.get("check")), f.name


def test_saved_config_reads_fields_added_since_as_the_run_used_them():
    """A run saved before temporal.reference existed used the previous state: reading its
    config back gives "previous_state" (not the new default), so a resumed or compared
    experiment does not take an old temporal run for the new rule; a complete dump reads back
    as written."""
    from bioglom.config import saved_config

    cfg = load_config(overrides={"train.rule": "temporal"})
    text = cfg.to_toml()
    assert saved_config(text) == cfg and cfg.temporal.reference == "prediction"
    old = "\n".join(line for line in text.splitlines() if not line.startswith("reference ="))
    assert "reference" not in old
    assert saved_config(old).temporal.reference == "previous_state"


def test_saved_config_reads_runs_whose_data_file_or_options_are_gone(tmp_path):
    """A saved config whose data file has moved is read (the file is not needed to look at a
    run or load its weights); one with an option refused since reads unvalidated."""
    from bioglom.config import saved_config

    data = tmp_path / "scenes.npz"
    np.savez(data, images=np.zeros((8, 3, 8, 8), dtype=np.float32))
    cfg = load_config(overrides={"data.source": "file", "data.path": str(data)})
    text = cfg.to_toml()
    data.unlink()
    with pytest.raises(ConfigError, match="data.path"):
        load_config(overrides={"data.source": "file", "data.path": str(data)})
    assert saved_config(text).data.path == str(data)
    refused = Config().to_toml().replace('negatives = "other_dreams"', 'negatives = "near_frames"')
    with pytest.raises(ConfigError, match="night.negatives"):
        saved_config(refused)
    assert saved_config(refused, validate=False).night.negatives == "near_frames"


def test_isolated_refuses_what_couples_columns():
    """Batch and per-image statistics mix columns, and the CNN front end is shared and sees the
    neighbours' pixels: the isolated control refuses them."""
    for norm in ("batch", "image"):
        with pytest.raises(bioglom.ConfigError, match="per-column normalisation"):
            small_config(model__sharing="isolated", model__state_norm=norm)
    with pytest.raises(bioglom.ConfigError, match="frontend.kind"):
        small_config(model__sharing="isolated", frontend__kind="cnn")
