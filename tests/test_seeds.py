"""The tests' own random inputs are replayable (tests/conftest.py): the same session seed and
node id give the same draws, alone or among other tests, and a failure says how to replay it."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import SEED_ENV, derive_seed

INNER = """
import numpy as np
import torch
from conftest import fresh_seed

def record(*values):
    with open("draws.txt", "a") as f:
        print(*values, file=f)

def test_first():
    record("first", fresh_seed(), fresh_seed())

def test_draws(rng):
    record("draws", fresh_seed(), torch.rand(2, generator=rng).tolist(),
           torch.rand(2).tolist(), np.random.rand())

def test_fails():
    assert fresh_seed() < 0
"""


def test_derive_seed_is_a_fixed_function_of_its_inputs():
    """Same (session, node id, key): same 32-bit seed; any input changed: another seed."""
    a = derive_seed(123, "tests/test_x.py::test_y[1]", 1)
    assert a == derive_seed(123, "tests/test_x.py::test_y[1]", 1)
    assert 0 <= a < 2**32
    others = {
        derive_seed(124, "tests/test_x.py::test_y[1]", 1),
        derive_seed(123, "tests/test_x.py::test_y[2]", 1),
        derive_seed(123, "tests/test_x.py::test_y[1]", 2),
        derive_seed(123, "tests/test_x.py::test_y[1]", "global"),
    }
    assert a not in others and len(others) == 4


def test_same_seed_and_node_id_replay_the_same_draws(pytester, monkeypatch):
    """A test run alone with the session seed of a full run draws what it drew there (its own
    generator, the rng fixture and the global generators); another session seed draws other
    values; the header shows the seed and a failure prints the command that replays it."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_inner=INNER)

    def draws(seed, *args):
        monkeypatch.setenv(SEED_ENV, str(seed))
        out = pytester.path / "draws.txt"
        out.unlink(missing_ok=True)
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
        return result, {line.split()[0]: line for line in out.read_text().splitlines()}

    full, a = draws(4242)
    full.assert_outcomes(passed=2, failed=1)
    assert set(a) == {"first", "draws"}
    assert any(line.startswith("bioglom test seed: 4242") for line in full.outlines)
    replay = "replay: BIOGLOM_TEST_SEED=4242 pytest test_inner.py::test_fails"
    assert replay in full.outlines
    alone, b = draws(4242, "test_inner.py::test_draws")
    alone.assert_outcomes(passed=1)
    assert b == {"draws": a["draws"]}
    _, c = draws(4243)
    assert c["first"] != a["first"] and c["draws"] != a["draws"]
    numbers = re.findall(r"\d+", a["first"])
    assert numbers[0] != numbers[1]  # successive draws of one test differ
