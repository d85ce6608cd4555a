"""bioglom.schedule: schedule texts against phases written out by hand; bad ones are errors."""

from __future__ import annotations

import pytest

from bioglom.config import ConfigError, load_config
from bioglom.schedule import Phase, parse_schedule, phase_of_update


@pytest.mark.parametrize(
    "text, phases",
    [
        ("day 5", [Phase("day", 5)]),
        ("night 2, then (day 3, night 1) x 2",
         [Phase("night", 2), Phase("day", 3), Phase("night", 1), Phase("day", 3),
          Phase("night", 1)]),
        ("interleaved 4", [Phase("interleaved", 4)]),
        ("(day 1, (night 1) x 2) * 2, day 1",
         [Phase("day", 1), Phase("night", 1), Phase("night", 1), Phase("day", 1),
          Phase("night", 1), Phase("night", 1), Phase("day", 1)]),
        ("  DAY 3 ,night 1  ", [Phase("day", 3), Phase("night", 1)]),
    ],
)  # fmt: skip
def test_schedules_expand_to_the_right_phases(text, phases):
    """Phases, repetitions (nested too), optional 'then' and case are read as written."""
    assert parse_schedule(text) == phases
    assert len(phase_of_update(phases)) == sum(p.length for p in phases)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "at least one phase"),
        ("dusk 5", "expected a phase"),
        ("day", "the length of a day phase"),
        ("day 0", ">= 1"),
        ("(day 5, night 1", "expected ')'"),
        ("(day 5) 3", "'x COUNT'"),
        ("day 5 night 5", "unexpected text"),
        ("day 5; night 1", "unexpected character"),
        ("(((day 1) x 1000) x 1000) x 1000", "more than 10000000 updates"),
        ("day 9999999, night 2", "expected at most 10000000"),
    ],
)
def test_a_bad_schedule_is_a_config_error_naming_it(text, fragment):
    """Bad schedules raise ConfigError on schedule.phases with the text and what is wrong."""
    with pytest.raises(ConfigError) as info:
        parse_schedule(text)
    assert info.value.field == "schedule.phases"
    assert fragment in str(info.value)


def test_config_validates_the_schedule():
    """A bad schedule is caught when the config is loaded, not when training starts."""
    with pytest.raises(ConfigError, match="schedule.phases"):
        load_config(overrides={"schedule.phases": "day 10, nap 3"})
