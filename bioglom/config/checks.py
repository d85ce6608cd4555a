"""Field checks: :class:`ConfigError` and the value checkers every config field carries.

Each check (:class:`Int`, :class:`Real`, :class:`Bool`, :class:`Choice`, :class:`RuleChoice`,
:class:`Text`, :class:`Device`, :class:`PerLevel`, :class:`Weights`) returns the (possibly
normalised) value or raises :class:`ConfigError` with a one-line message naming the field, the
bad value and what is allowed. :func:`_f` makes a dataclass field carrying its check and doc.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

#: Names of the four contributions to a level's next embedding (paper section 1).
CONTRIBUTIONS = ("bottom_up", "top_down", "previous", "lateral")


class ConfigError(ValueError):
    """A bad configuration value.

    Attributes
    ----------
    field : str
        Dotted name of the field, e.g. ``"model.dim"``.
    value : object
        The offending value.
    allowed : str
        What would have been accepted.
    """

    def __init__(self, field: str, value: Any, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {_show(value)}: {allowed}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------------------------
# Field checks. Each returns the (possibly normalised) value or raises ConfigError.


class _Check:
    allowed = ""

    def __call__(self, value: Any, name: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


class Int(_Check):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi
        if lo is not None and hi is not None:
            self.allowed = f"expected an integer in [{lo}, {hi}]"
        elif lo is not None:
            self.allowed = f"expected an integer >= {lo}"
        else:
            self.allowed = "expected an integer"

    def ok(self, v: Any) -> bool:
        return (
            _is_int(v) and (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)
        )

    def __call__(self, value: Any, name: str) -> int:
        if not self.ok(value):
            raise ConfigError(name, value, self.allowed)
        return value


class Real(_Check):
    def __init__(self, lo: float | None = None, hi: float | None = None, lo_open: bool = False):
        self.lo, self.hi, self.lo_open = lo, hi, lo_open
        op = ">" if lo_open else ">="
        if lo is not None and hi is not None:
            br = "(" if lo_open else "["
            self.allowed = f"expected a finite number in {br}{lo}, {hi}]"
        elif lo is not None:
            self.allowed = f"expected a finite number {op} {lo}"
        else:
            self.allowed = "expected a finite number"

    def ok(self, v: Any) -> bool:
        if not _is_real(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def __call__(self, value: Any, name: str) -> float:
        if not self.ok(value):
            raise ConfigError(name, value, self.allowed)
        return float(value)


class Bool(_Check):
    allowed = "expected true or false"

    def __call__(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(name, value, self.allowed)
        return value


class Choice(_Check):
    def __init__(self, *options: str):
        self.options = options
        self.allowed = "expected one of " + ", ".join(repr(o) for o in options)

    def __call__(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise ConfigError(name, value, self.allowed)
        return value


class RuleChoice(Choice):
    """The names of the learning rules in :data:`bioglom.rules.RULES`, read from the registry
    when a value is checked (so that a rule is registered in one place)."""

    def __init__(self):  # the options are the registry's, not fixed here
        pass

    @property
    def options(self) -> tuple[str, ...]:  # type: ignore[override]
        from ..rules import RULES  # here, not at import: the rules import the model and config

        return tuple(RULES)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "expected one of " + ", ".join(repr(o) for o in self.options)


class Text(_Check):
    allowed = "expected a string"

    def __call__(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(name, value, self.allowed)
        return value


class Device(_Check):
    allowed = "expected 'cpu', 'cuda', 'cuda:<index>' or 'auto'"

    def __call__(self, value: Any, name: str) -> str:
        ok = isinstance(value, str) and (
            value in ("cpu", "cuda", "auto") or (value.startswith("cuda:") and value[5:].isdigit())
        )
        if not ok:
            raise ConfigError(name, value, self.allowed)
        return value


class PerLevel(_Check):
    """A per-level value: one value for every level, a list with one value per level (length
    checked against ``model.levels`` later), or a table ``{ first = a, step = b }`` meaning
    ``a + b * l`` at level ``l`` (so a radius can grow with the level whatever the depth)."""

    def __init__(self, item: Int | Real):
        self.item = item
        what = item.allowed.removeprefix("expected ")
        self.allowed = (
            f"expected one value, a list with one value per level, or a table "
            f"{{ first = ..., step = ... }}; each value {what}"
        )

    def __call__(self, value: Any, name: str) -> Any:
        if isinstance(value, Mapping):
            if set(value) != {"first", "step"}:
                raise ConfigError(name, value, self.allowed)
            first, step = value["first"], value["step"]
            kind = Int() if isinstance(self.item, Int) else Real()
            if not (kind.ok(first) and kind.ok(step)) or not self.item.ok(first):
                raise ConfigError(name, value, self.allowed)
            return {"first": self.item(first, name), "step": kind(step, name)}
        if isinstance(value, list | tuple):
            if len(value) == 0 or not all(self.item.ok(v) for v in value):
                raise ConfigError(name, value, self.allowed)
            return [self.item(v, name) for v in value]
        if not self.item.ok(value):
            raise ConfigError(name, value, self.allowed)
        return self.item(value, name)


class Weights(_Check):
    """Weights of the four contributions: a table with keys from CONTRIBUTIONS, values >= 0."""

    allowed = (
        "expected a table with keys bottom_up, top_down, previous, lateral "
        "and finite values >= 0, not all 0"
    )

    def __init__(self, default: Mapping[str, float]):
        self.default = dict(default)

    def __call__(self, value: Any, name: str) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, self.allowed)
        out = dict(self.default)
        for key, v in value.items():
            if key not in CONTRIBUTIONS:
                raise ConfigError(f"{name}.{key}", v, _unknown_hint(key, CONTRIBUTIONS))
            if not _is_real(v) or v < 0:
                raise ConfigError(f"{name}.{key}", v, "expected a finite number >= 0")
            out[key] = float(v)
        if sum(out.values()) <= 0:
            raise ConfigError(name, value, self.allowed)
        return out


def _f(default: Any, check: _Check, doc: str) -> Any:
    """A dataclass field with its check and its one-line documentation."""
    if isinstance(default, dict | list):
        return field(
            default_factory=lambda d=default: json.loads(json.dumps(d)),
            metadata={"check": check, "doc": doc},
        )
    return field(default=default, metadata={"check": check, "doc": doc})


def _unknown_hint(key: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}known: {', '.join(known)}"
