"""TOML in and out: configs from tables, TOML text and files, ``--set section.key=value``
overrides, the configs runs saved (:data:`LEGACY_VALUES`), and the documented dumps
(``experiments/default.toml``, ``bioglom config --markdown``)."""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .checks import ConfigError, _unknown_hint
from .sections import _SECTIONS
from .validation import Config, _toml_value

# ----------------------------------------------------------------------------------------------
# Building configs


def config_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    validate: bool = True,
    check_files: bool = True,
) -> Config:
    """Build and validate a config from a nested mapping (section -> field -> value).

    Missing sections and fields take their defaults. ``base_dir``, when given, is the folder
    that a relative ``data.path`` is resolved against. ``validate=False`` skips every check
    but the field names (for reading what a run recorded); ``check_files`` as in
    :meth:`Config.validate`.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("<config>", data, "expected a table of sections")
    cfg = Config()
    for sname, values in data.items():
        if sname not in _SECTIONS:
            raise ConfigError(str(sname), "[section]", _unknown_hint(str(sname), _SECTIONS))
        if not isinstance(values, Mapping):
            raise ConfigError(str(sname), values, "expected a table of fields, e.g. [section]")
        section = getattr(cfg, sname)
        names = [f.name for f in dataclasses.fields(section)]
        for key, value in values.items():
            if key not in names:
                raise ConfigError(f"{sname}.{key}", value, _unknown_hint(str(key), names))
            setattr(section, key, value)
    if base_dir is not None and isinstance(cfg.data.path, str) and cfg.data.path:
        if not os.path.isabs(cfg.data.path):
            cfg.data.path = os.path.normpath(os.path.join(base_dir, cfg.data.path))
    return cfg.validate(check_files) if validate else cfg


def config_from_toml(text: str, *, base_dir: str | os.PathLike | None = None) -> Config:
    """Parse TOML text into a validated :class:`Config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("<toml>", text[:40], f"not valid TOML: {err}") from None
    return config_from_dict(data, base_dir=base_dir)


#: fields added after runs were first saved, with the value that reproduces what a run saved
#: without them did -- which is not always the new default
LEGACY_VALUES = {("temporal", "reference"): "previous_state"}


def saved_config(
    text: str,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    validate: bool = True,
) -> Config:
    """The config a run or a weights file recorded (the complete TOML dump of
    :meth:`Config.to_toml`), with ``overrides`` applied.

    A field the dump lacks was added after the file was written: it takes the value in
    ``LEGACY_VALUES`` that reproduces what the run did (a temporal run saved before
    ``temporal.reference`` existed used the previous state), else its default. The data file
    need not exist any more. ``validate=False`` reads a config that today's rules refuse
    (e.g. an option refused since), for looking at a run, not for training.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("<toml>", text[:40], f"not valid TOML: {err}") from None
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    if validate:
        return config_with_overrides(data, overrides, check_files=False)
    if overrides:
        raise ValueError("saved_config: overrides need validate=True")
    return config_from_dict(data, validate=False)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into the key path and a value parsed as TOML.

    A value that is not valid TOML is taken as a plain string, so ``consensus.mode=gaussian``
    needs no quotes.
    """
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError("--set", item, "expected section.key=value")
    key, _, raw = item.partition("=")
    path = key.strip().split(".")
    if len(path) not in (2, 3) or not all(path):
        raise ConfigError("--set", item, "expected section.key=value or section.key.subkey=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> Config:
    """Load a TOML config file, apply overrides and validate.

    Parameters
    ----------
    path
        A TOML file; ``None`` starts from the defaults.
    overrides
        ``["section.key=value", ...]`` (values parsed as TOML, else taken as strings) or a
        mapping ``{"section.key": value}``. A table field takes ``section.key.subkey=value``.

    Raises
    ------
    ConfigError
        Missing file, unknown section or field, wrong type, out-of-range value, or a broken
        cross-field rule; the message names the field, the value and what is allowed.
    """
    data: dict[str, Any] = {}
    base_dir = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config", str(path), "no such file (expected a TOML config file)")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("config", str(path), f"not valid TOML: {err}") from None
        except UnicodeDecodeError:
            raise ConfigError("config", str(path), "not a text file") from None
        base_dir = p.resolve().parent
        # resolve the file's own relative data.path now; overrides are relative to the cwd
        d = data.get("data")
        if isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"]:
            if not os.path.isabs(d["path"]):
                d["path"] = os.path.normpath(os.path.join(base_dir, d["path"]))
    return config_with_overrides(data, overrides)


def config_with_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    check_files: bool = True,
) -> Config:
    """The validated config of a table of sections ``data`` (as parsed from TOML) with
    ``overrides`` applied (as in :func:`load_config`); ``data`` itself is not changed."""
    data = copy.deepcopy(dict(data))
    if isinstance(overrides, Mapping):
        items = [(str(k).split("."), v) for k, v in overrides.items()]
    else:
        items = [parse_override(o) for o in overrides]
    for keys, value in items:
        if len(keys) not in (2, 3) or not all(keys):
            raise ConfigError(".".join(keys), value, "expected section.key or section.key.subkey")
        section = data.setdefault(keys[0], {})
        if not isinstance(section, dict):
            raise ConfigError(keys[0], section, "expected a table of fields")
        if len(keys) == 3:
            if keys[1] not in section:
                default = _default_value(keys[0], keys[1])
                section[keys[1]] = dict(default) if isinstance(default, Mapping) else {}
            table = section[keys[1]]
            if not isinstance(table, dict):
                raise ConfigError(".".join(keys[:2]), table, "expected a table")
            table[keys[2]] = value
        else:
            section[keys[1]] = value
    return config_from_dict(data, check_files=check_files)


def _default_value(section: str, key: str) -> Any:
    """The dataclass default of ``section.key``, or None when there is no such field."""
    cls = _SECTIONS.get(section)
    if cls is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        return None
    return getattr(cls(), key)


def documented_toml(config: Config | None = None, header: str = "") -> str:
    """TOML text of ``config`` (default: the defaults) with every field's doc as a comment."""
    import textwrap

    config = Config() if config is None else config
    docs = field_docs()
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    if lines:
        lines.append("")
    for sname, section in config.to_dict().items():
        lines.append(f"[{sname}]")
        for key, value in section.items():
            lines += [f"# {ln}" for ln in textwrap.wrap(docs[f"{sname}.{key}"], 96)]
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def documented_markdown() -> str:
    """The configuration reference as Markdown (``docs/configuration.md``): per section its
    doc line and a table of every field with its default and its doc, all taken from the
    fields themselves (``bioglom config --markdown`` prints it; a test keeps the page equal to
    it)."""
    defaults = Config().to_dict()
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `bioglom config --markdown > docs/configuration.md`; do not edit -->",
        "",
        "A config is a TOML file with the sections below; a missing field takes its default.",
        "`experiments/default.toml` lists every field with its default and meaning, and",
        "`bioglom config CONFIG --set section.key=value` prints any resolved config. Per-level",
        "fields take one value for all levels, a list with one value per level (level 0 first), or",
        "a table `{ first = a, step = b }` meaning `a + b * l` at level `l`.",
    ]
    for sname, cls in _SECTIONS.items():
        title = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        title = title.split(": ", 1)[-1]
        title = title[:1].upper() + title[1:]
        lines += ["", f"## `[{sname}]`", "", title, "", "| field | default | meaning |"]
        lines.append("| --- | --- | --- |")
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"].replace("|", "\\|")
            value = _toml_value(defaults[sname][f.name])
            lines.append(f"| `{sname}.{f.name}` | `{value}` | {doc} |")
    return "\n".join(lines) + "\n"


def field_docs() -> dict[str, str]:
    """``{"section.field": "one-line doc"}`` for every field (docs/configuration.md, tests)."""
    out = {}
    for sname, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f"{sname}.{f.name}"] = f.metadata["doc"]
    return out
