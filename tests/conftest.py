"""Shared helpers: small configs, models and runs, fresh random inputs, every draw replayable.

Random inputs change from run to run, but every failure can be replayed. One session seed is
taken from the environment variable ``BIOGLOM_TEST_SEED`` when it is set, else drawn from the
OS once, and shown in pytest's header. Each test's seeds are derived from (session seed, the
test's node id, a counter that restarts with every test), and torch's, numpy's and Python's
global generators are seeded from (session seed, node id) before each test, so a test draws
the same inputs whether it runs alone or among others. A failing test's report ends with the
command that replays it: ``replay: BIOGLOM_TEST_SEED=<s> pytest <node id>``.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import signal

import numpy as np
import pytest
import torch

import bioglom
from bioglom.config import load_config
from bioglom.rules import make_rule
from bioglom.runs import open_run

SMALL = {
    "model.levels": 3,
    "model.dim": 8,
    "model.hidden": 16,
    "frontend.hidden": 16,
    "frontend.patch_size": 2,
    "data.image_size": 8,
    "data.n_train": 16,
    "data.n_probe": 4,
    "data.n_linear": 16,
    "train.batch_size": 4,
    "settle.steps": 3,
    "attention.radius": 1,
}


def small_config(**overrides):
    """A tiny model (K = 3, d = 8, 4x4 columns on 8x8 images) for fast tests.

    Keyword names use "__" for ".": ``small_config(model__sharing="shared")``.
    """
    items = dict(SMALL)
    items.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(overrides=items)


pytest_plugins = ["pytester"]  # for tests/test_seeds.py, which runs pytest on this file

#: the environment variable that fixes the session seed (to replay a failure)
SEED_ENV = "BIOGLOM_TEST_SEED"

_seeds = {"session": None, "node": "<outside a test>", "count": 0}


def session_seed() -> int:
    """This session's seed: ``$BIOGLOM_TEST_SEED`` if set, else drawn from the OS once."""
    if _seeds["session"] is None:
        env = os.environ.get(SEED_ENV, "").strip()
        _seeds["session"] = int(env) if env else int.from_bytes(os.urandom(4), "little")
    return _seeds["session"]


def derive_seed(session: int, nodeid: str, key: int | str) -> int:
    """A 32-bit seed that is a fixed function of (session seed, test node id, key)."""
    text = f"{session}\x00{nodeid}\x00{key}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")


def fresh_seed() -> int:
    """The next seed of the running test: new random inputs on every run (unless the session
    seed is fixed), the same sequence whenever the test is replayed with the same seed."""
    _seeds["count"] += 1
    return derive_seed(session_seed(), _seeds["node"], _seeds["count"])


def replay_command(nodeid: str) -> str:
    return f"{SEED_ENV}={session_seed()} pytest {shlex.quote(nodeid)}"


def pytest_configure(config):
    session_seed()


def pytest_report_header(config):
    return f"bioglom test seed: {session_seed()} (replay with {SEED_ENV}={session_seed()})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of ``item``: restart its seed sequence and seed the global
    generators from (session seed, node id)."""
    _seeds["node"], _seeds["count"] = item.nodeid, 0
    g = derive_seed(session_seed(), item.nodeid, "global")
    torch.manual_seed(g)
    np.random.seed(g)  # noqa: NPY002 (the legacy global generator, for any code using it)
    random.seed(g)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        line = "replay: " + replay_command(item.nodeid)
        if hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("bioglom test seed", line)
        else:
            report.sections.append(("bioglom test seed", line))
    return report


def pytest_terminal_summary(terminalreporter):
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(
            f"bioglom test seed {session_seed()}: replay a failure with "
            f"{SEED_ENV}={session_seed()} pytest <node id>"
        )


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(fresh_seed())


def rand_images(b: int, c: int = 3, size: int = 8, gen: torch.Generator | None = None):
    return torch.rand(b, c, size, size, generator=gen)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def np_rng() -> np.random.Generator:
    """A numpy generator seeded by :func:`fresh_seed`."""
    return np.random.default_rng(fresh_seed())


# ---------------------------------------------------------------------------------------------
# small models and rules (tests of the model's parts and of the rules)


def build(**kw):
    return bioglom.build_model(small_config(**kw))


def standardised(y):
    """Per-vector zero mean, unit variance, written out independently of bioglom.norm."""
    mean = y.mean(-1, keepdim=True)
    var = ((y - mean) ** 2).mean(-1, keepdim=True)
    return (y - mean) / torch.sqrt(var + 1e-5)


def setup(**kw):
    cfg = small_config(**kw)
    model = bioglom.build_model(cfg)
    model.train()
    return cfg, model, make_rule(model, cfg)


# ---------------------------------------------------------------------------------------------
# runs stopped and resumed (test_checkpoint.py, test_experiments.py)

RELIABLE = {"train__updates": 12, "run__record_every": 2, "run__checkpoint_every": 4}


def run_contents(path) -> tuple[dict[str, np.ndarray], list[int], list[str]]:
    """Metrics (elapsed_s aside), snapshot steps and phases of a run file."""
    with open_run(path) as run:
        metrics = {k: v for k, v in run.metrics.items() if k != "elapsed_s"}
        return metrics, list(run.snapshot_steps), list(run.phase)


def assert_same_run(a, b) -> None:
    ma, sa, pa = run_contents(a)
    mb, sb, pb = run_contents(b)
    assert sa == sb and pa == pb
    assert ma.keys() == mb.keys()
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k], err_msg=k)


def assert_same_weights(a, b) -> None:
    wa = torch.load(a.with_suffix(".pt"), weights_only=False)["model"]
    wb = torch.load(b.with_suffix(".pt"), weights_only=False)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def on_day_update(monkeypatch, day_update: int, before=None, after=None) -> None:
    """Hook the trainer's rule: at its ``day_update``-th update call ``before()`` first, and
    pass the update's metrics through ``after(metrics)`` (which may change them)."""
    import bioglom.train as train_module

    real = train_module.make_rule

    def hooked(model, config):
        rule = real(model, config)
        update, calls = rule.update, {"n": 0}

        def hit(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == day_update and before is not None:
                before()
            out = update(*args, **kwargs)
            if calls["n"] == day_update and after is not None:
                after(out)
            return out

        rule.update = hit
        return rule

    monkeypatch.setattr(train_module, "make_rule", hooked)


def interrupt_at(monkeypatch, day_update: int) -> None:
    """Make the rule's ``day_update``-th update send this process SIGINT (a Ctrl-C)."""
    on_day_update(monkeypatch, day_update, before=lambda: os.kill(os.getpid(), signal.SIGINT))


def poison_at(monkeypatch, day_update: int) -> None:
    """Make the rule's ``day_update``-th update return a NaN loss."""
    on_day_update(
        monkeypatch, day_update, after=lambda out: out.update(loss=torch.tensor(float("nan")))
    )


def update_of_added_term_at_weight_zero(base: dict, added: dict, images, truth=None) -> dict:
    """One SGD update of two rules from the same weights, batch and seed: ``base`` (config
    overrides of the plain rule) and ``added`` (the rule with an added term at weight 0).
    Asserts that every weight ends bit for bit equal, and returns the second rule's metrics
    (its term is measured all the same)."""
    kw = {"train__optimizer": "sgd"}
    _, m1, r1 = setup(**kw, **base)
    _, m2, r2 = setup(**kw, **added)
    m2.load_state_dict(m1.state_dict())
    g = fresh_seed()
    r1.update(images, torch.Generator().manual_seed(g))
    extra = {} if truth is None else {"truth": truth}
    metrics = r2.update(images, torch.Generator().manual_seed(g), **extra)
    for (name, p), q in zip(m1.named_parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q), name
    return metrics


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """A folder of three tiny finished runs, named as the experiment scripts name theirs: an
    unshared day-only arm with seeds 0 and 1 (``a_seed0.h5``, ``a_seed1.h5``: 4 updates,
    a record every 2) and a shared arm with a night (``b_seed0.h5``: day 3, night 2, a record
    every update). Shared by the table and notebook tests; do not write into it."""
    from bioglom.train import train

    folder = tmp_path_factory.mktemp("tiny_runs")
    for seed in (0, 1):
        config = small_config(train__updates=4, run__record_every=2, run__seed=seed)
        train(config, folder / f"a_seed{seed}.h5", progress=False)
    config = small_config(
        model__sharing="shared", schedule__phases="day 3, night 2", run__record_every=1
    )
    train(config, folder / "b_seed0.h5", progress=False)
    return folder
