"""The tiny training problem that in-process tests train in a second: 60 peaks points, width 4,
8 layers, 2 MGRIT levels, 6 iterations, no progress lines and no checkpoints in between."""
from __future__ import annotations

from braidnet import config

BASE = {"data": {"n_train": 60, "n_val": 20}, "network": {"width": 4, "layers": 8},
        "braid": {"max_levels": 2, "cfactor": 2}, "optimizer": {"iterations": 6},
        "output": {"progress": False, "checkpoint_every": 0}}


def small_config(**sections: dict) -> config.Config:
    """The checked configuration of the tiny problem, with ``section={key: value}`` changes."""
    cfg = config.defaults()
    for section, keys in {**BASE, **sections}.items():
        cfg[section].update({**BASE.get(section, {}), **keys})
    return config.check(cfg)
