"""bioglom: a simulator of Hinton's GLOM in which learning is local.

Public entry points::

    cfg = bioglom.load_config("experiments/default.toml", overrides=["model.dim=64"])
    model = bioglom.build_model(cfg)
    model = bioglom.load_model("runs/default.pt", overrides={"attention.beta_end": 1.0})
    result = model.settle(images, steps=6, return_trajectory=True)   # result.state [K, N, B, d]
    scenes = bioglom.data.part_whole_scenes(n=8, size=32, seed=0)
    run = bioglom.runs.open_run("runs/default.h5")
"""

from . import data, runs
from .config import Config, ConfigError, load_config
from .model import Glom, SettleResult, StepOutput, build_model, load_model

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "Glom",
    "SettleResult",
    "StepOutput",
    "build_model",
    "load_model",
    "data",
    "runs",
    "load_config",
    "__version__",
]
