"""Property-based: every bad config gives bioglom's ConfigError, never another exception.

Bad values are bad by construction, each for a reason stated here and not taken from the
validators: an unknown section or field; a value of the wrong type for the field's default
(a string where a number is due, a number where a string is due, a list or table where a
scalar is due, a boolean where a number is due); a non-finite float; an integer beyond the
field's declared bounds; a string outside a field's declared options; an image size that is
not a multiple of the patch size; and malformed TOML text.
"""

from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioglom.config import Config, ConfigError, PerLevel, config_from_toml, load_config

SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
FIELDS = [
    (section, f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory(),
     f.metadata["check"])
    for section, cls in ((f.name, f.default_factory) for f in dataclasses.fields(Config))
    for f in dataclasses.fields(cls())
]  # fmt: skip

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
any_scalar = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.booleans(), words
)


def wrong_type(default, check):
    """Values whose type cannot stand for ``default``'s. A per-level field takes a list of one
    value per level, so its wrong lists hold words, which no per-level field accepts (a list of
    numbers of the right length would be valid)."""
    per_level = isinstance(check, PerLevel)
    if per_level:  # nor a table with the keys of a progression ({first, step})
        lists = st.lists(words, min_size=1, max_size=5)
        tables = st.dictionaries(words.filter(lambda w: w not in ("first", "step")), any_scalar,
                                 min_size=1, max_size=2)  # fmt: skip
    else:
        lists = st.lists(any_scalar, max_size=3)
        tables = st.dictionaries(words, any_scalar, max_size=2)
    if isinstance(default, bool):
        return st.one_of(st.integers(), words, lists, tables)
    if isinstance(default, int | float):
        return st.one_of(words, st.booleans(), lists, tables)
    if isinstance(default, str):
        return st.one_of(st.integers(), st.floats(), st.booleans(), lists, tables)
    return st.one_of(words, lists)  # a table field


@st.composite
def bad_override(draw):
    kind = draw(
        st.sampled_from(["section", "field", "type", "nonfinite", "bounds", "option", "divisible"])
    )
    if kind == "section":
        name = draw(words.filter(lambda w: w not in SECTIONS))
        return {f"{name}.x": draw(any_scalar)}
    section, name, default, check = draw(st.sampled_from(FIELDS))
    if kind == "field":
        known = {f for s, f, _, _ in FIELDS if s == section}
        return {f"{section}.{draw(words.filter(lambda w: w not in known))}": draw(any_scalar)}
    if kind == "nonfinite":
        floats = [f for f in FIELDS if isinstance(f[2], float)]
        section, name, _, _ = draw(st.sampled_from(floats))
        return {f"{section}.{name}": draw(st.sampled_from([math.nan, math.inf, -math.inf]))}
    if kind == "bounds":
        bounded = [f for f in FIELDS if getattr(f[3], "hi", None) is not None and
                   isinstance(f[2], int) and not isinstance(f[2], bool)]  # fmt: skip
        section, name, _, check = draw(st.sampled_from(bounded))
        too_big = draw(st.integers(check.hi + 1, check.hi + 10**9))
        too_small = draw(st.integers(check.lo - 10**9, check.lo - 1))
        return {f"{section}.{name}": draw(st.sampled_from([too_big, too_small]))}
    if kind == "option":
        choices = [f for f in FIELDS if hasattr(f[3], "options")]
        section, name, _, check = draw(st.sampled_from(choices))
        return {f"{section}.{name}": draw(words.filter(lambda w: w not in check.options))}
    if kind == "divisible":
        patch = draw(st.sampled_from([2, 4]))
        size = draw(st.integers(9, 40).filter(lambda s: s % patch))
        return {"frontend.patch_size": patch, "data.image_size": size}
    return {f"{section}.{name}": draw(wrong_type(default, check))}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_override())
def test_bad_overrides_raise_config_error_naming_the_field(override):
    try:
        load_config(overrides=override)
    except ConfigError as err:
        assert err.field and str(err).startswith(err.field), "one line naming the field first"
    else:
        raise AssertionError(f"accepted a bad config: {override!r}")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_toml_text_gives_a_config_or_a_config_error(text):
    """Random text is either a valid config (e.g. empty) or a ConfigError, never a crash."""
    try:
        config_from_toml(text)
    except ConfigError:
        pass
