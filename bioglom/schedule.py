"""Learning schedules: day and night phases (docs/design.md §5, paper §12.2).

A schedule is written as text in ``schedule.phases``::

    night 200, then (day 2000, night 200) x 10

Grammar: a comma-separated sequence (``then`` after a comma is optional and only reads well)
of items; an item is ``KIND LENGTH`` or ``( sequence ) x COUNT``. Kinds:

* ``day`` -- real inputs, settling with lateral attention, positive (local) updates;
* ``night`` -- offline: dreams generated top-down, negative updates of the bottom-up nets;
* ``interleaved`` -- a day update and a night update in every update.

Controls are one line each: day-only ``day 2000``; negative first ``night 200, day 2000``;
interleaved ``interleaved 2000``; long blocks ``day 2000, night 2000``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import ConfigError

__all__ = ["Phase", "parse_schedule", "phase_of_update", "KINDS"]

KINDS = ("day", "night", "interleaved")
#: the longest schedule accepted, in updates (repetitions multiply quickly)
MAX_UPDATES = 10_000_000
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z]+)|([(),*]))")


@dataclass(frozen=True)
class Phase:
    """One block of the schedule: its kind and its length in updates."""

    kind: str
    length: int


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConfigError("schedule.phases", text, f"unexpected character at {pos + 1}")
        number, word, sym = m.groups()
        start = m.start(m.lastindex)
        if number is not None:
            out.append(("num", number, start))
        elif word is not None:
            out.append(("word", word.lower(), start))
        else:
            out.append(("sym", sym, start))
        pos = m.end()
    return out


def parse_schedule(text: str) -> list[Phase]:
    """Parse a schedule into its phases, repetitions expanded, in order.

    Raises ConfigError on ``schedule.phases`` naming the text and what went wrong.
    """
    toks = _tokens(text)
    i = 0

    def fail(msg: str) -> ConfigError:
        where = f" at character {toks[i][2] + 1}" if i < len(toks) else " at the end"
        return ConfigError("schedule.phases", text, msg + where)

    def peek(kind: str, value: str | None = None) -> bool:
        return i < len(toks) and toks[i][0] == kind and (value is None or toks[i][1] == value)

    def number(what: str) -> int:
        nonlocal i
        if not peek("num"):
            raise fail(f"expected {what} (a whole number)")
        n = int(toks[i][1])
        if n < 1:
            raise fail(f"expected {what} >= 1")
        i += 1
        return n

    def sequence() -> list[Phase]:
        nonlocal i
        phases = item()
        while peek("sym", ","):
            i += 1
            if peek("word", "then"):
                i += 1
            phases += item()
        return phases

    def item() -> list[Phase]:
        nonlocal i
        if peek("sym", "("):
            i += 1
            inner = sequence()
            if not peek("sym", ")"):
                raise fail("expected ')'")
            i += 1
            if not (peek("word", "x") or peek("sym", "*")):
                raise fail("expected 'x COUNT' after ')'")
            i += 1
            count = number("a repetition count")
            if sum(p.length for p in inner) * count > MAX_UPDATES:
                raise fail(f"more than {MAX_UPDATES} updates in all")
            return inner * count
        if peek("word") and toks[i][1] in KINDS:
            kind = toks[i][1]
            i += 1
            return [Phase(kind, number(f"the length of a {kind} phase"))]
        raise fail(f"expected a phase ({', '.join(KINDS)} LENGTH) or '('")

    if not toks:
        raise ConfigError("schedule.phases", text, "expected at least one phase")
    phases = sequence()
    if i != len(toks):
        raise fail("unexpected text")
    total = sum(p.length for p in phases)
    if total > MAX_UPDATES:
        raise ConfigError(
            "schedule.phases", text, f"{total} updates in all; expected at most {MAX_UPDATES}"
        )
    return phases


def phase_of_update(phases: list[Phase]) -> list[str]:
    """The kind of every update ``1..total``, in order (index 0 is update 1)."""
    return [p.kind for p in phases for _ in range(p.length)]
