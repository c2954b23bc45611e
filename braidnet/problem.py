"""What a training configuration describes: the data, the network at any depth, its initial weights,
the MGRIT options and the optimiser.  One object, built once per run, that the per-level runner
(:mod:`braidnet.level`), the coarse starts and the work-unit calibration all build from.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from braidnet import config as _config
from braidnet import datasets, optim
from braidnet.resnet import ResNet


def load_data(cfg: _config.Config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val) as configured; the same on every rank (seeded)."""
    data = cfg["data"]
    if data["dataset"] == "peaks":
        return datasets.peaks(data["n_train"], data["n_val"], seed=data["seed"])
    if data["dataset"] == "indian_pines":
        return datasets.indian_pines(n_train=data["n_train"], n_val=data["n_val"] or None, seed=data["seed"])
    return datasets.load_lpt_text(data["path"])     # config.check made sure data.path is given


def level_plan(cfg: _config.Config) -> List[Tuple[int, int]]:
    """(layers, optimisation iterations) per level, coarsest first; one level when not nested."""
    schedule = cfg["nested"]["schedule"]
    layers = cfg["network"]["layers"]
    if not schedule:
        return [(layers, cfg["optimizer"]["iterations"])]
    r = cfg["nested"]["refine"]
    n = len(schedule)
    return [(layers // r ** (n - 1 - k), m) for k, m in enumerate(schedule)]


class Problem:
    """The configured training problem on the ranks of ``comm``: data loaded once, networks on demand.

    ``cfg`` comes from :func:`braidnet.config.load_config` (or :func:`braidnet.config.check`): it is
    not checked again here.
    """

    def __init__(self, cfg: _config.Config, comm) -> None:
        self.cfg = cfg
        self.comm = comm
        self.X, self.y, self.X_val, self.y_val = load_data(cfg)
        self.n_features = self.X.shape[1]
        self.n_classes = int(max(self.y.max(), self.y_val.max() if len(self.y_val) else 0)) + 1
        self.plan = level_plan(cfg)

    @property
    def validation(self) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """(X_val, y_val), or (None, None) without validation data."""
        return (self.X_val, self.y_val) if len(self.X_val) else (None, None)

    def network(self, layers: int) -> ResNet:
        """The configured ResNet with ``layers`` residual layers."""
        net = self.cfg["network"]
        return ResNet(self.n_features, self.n_classes, net["width"], layers, T=net["T"],
                      activation=net["activation"], opening="dense" if net["opening"] == "dense" else "pad",
                      bias=net["bias"], gamma_tik=net["gamma_tik"], gamma_ddt=net["gamma_ddt"],
                      gamma_class=net["gamma_class"], dtype=net["dtype"])

    def initial_params(self, layers: int, seed: Optional[int] = None) -> np.ndarray:
        """The configured initialisation of the ``layers``-layer network (seed: network.seed by default)."""
        net = self.cfg["network"]
        return self.network(layers).init_params(
            seed=net["seed"] if seed is None else seed,
            scale_opening=net["init_opening"] if net["opening"] == "dense" else 0.0,
            scale_layers=net["init_layers"], scale_classifier=net["init_classifier"])

    def braid_options(self) -> Dict[str, Any]:
        """Options of the primal, adjoint and validation cores."""
        braid = self.cfg["braid"]
        nrelax: Any = braid["nrelax"]
        if braid["nrelax_fine"] >= 0:
            nrelax = [braid["nrelax_fine"]] + [braid["nrelax"]] * (braid["max_levels"] - 1)
        return {"max_levels": braid["max_levels"], "cfactor": braid["cfactor"], "nrelax": nrelax,
                "min_coarse": braid["min_coarse"], "fmg": braid["fmg"], "skip": braid["skip"],
                "final_fc_relax": braid["final_fc_relax"]}

    def optimizer(self, dot) -> optim.LineSearchOptimizer:
        """A fresh line-search optimiser working with the distributed inner product ``dot``."""
        opt = self.cfg["optimizer"]
        common = dict(dot=dot, ls_factor=opt["ls_factor"], c1=opt["armijo_c"], ls_max_trials=opt["ls_trials"])
        if opt["method"] == "lbfgs":
            return optim.LBFGS(memory=opt["memory"], **common)
        if opt["method"] == "bfgs":
            return optim.BFGS(**common)
        return optim.SteepestDescent(**common)
