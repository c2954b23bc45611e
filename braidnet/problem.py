"""What a training configuration describes: the data, the network at any depth, its initial weights,
the MGRIT options and the optimiser.  One object, built once per run, that the per-level runner
(:mod:`braidnet.level`), the coarse starts and the work-unit calibration all build from.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from braidnet import config as _config
from braidnet import datasets, optim
from braidnet.batches import BatchOrder
from braidnet.resnet import ResNet


def load_data(cfg: _config.Config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val) as configured; the same on every rank (seeded).

    Image data sets (digits, idx) give X as images (n, H, W); :class:`Problem` flattens them to rows.
    """
    data = cfg["data"]
    if data["dataset"] == "digits":
        X, y, Xv, yv = datasets.digits(n_val=data["n_val"], seed=data["seed"])
        return X[:data["n_train"]], y[:data["n_train"]], Xv, yv
    if data["dataset"] == "idx":
        X, y = datasets.idx(data["images"], data["labels"])
        if data["val_images"]:
            Xv, yv = datasets.idx(data["val_images"], data["val_labels"])
            Xv, yv = Xv[:data["n_val"]], yv[:data["n_val"]]
        else:                       # the last n_val training images validate
            if data["n_val"] >= len(y):
                raise _config.ConfigError(f"data.n_val={data['n_val']} leaves none of the {len(y)} images of "
                                          f"{data['images']} for training")
            cut = len(y) - data["n_val"]
            X, y, Xv, yv = X[:cut], y[:cut], X[cut:], y[cut:]
        return X[:data["n_train"]], y[:data["n_train"]], Xv, yv
    if data["dataset"] == "peaks":
        return datasets.peaks(data["n_train"], data["n_val"], seed=data["seed"])
    if data["dataset"] == "indian_pines":
        return datasets.indian_pines(n_train=data["n_train"], n_val=data["n_val"] or None, seed=data["seed"])
    return datasets.load_lpt_text(data["path"])     # config.check made sure data.path is given


def level_plan(cfg: _config.Config, n_train: Optional[int] = None) -> List[Tuple[int, int]]:
    """(layers, optimisation iterations) per level, coarsest first; one level when not nested.

    With ``optimizer.epochs`` > 0 (mini-batches, not nested) the one level trains that many epochs
    of ``n_train // batch_size`` steps (``n_train``: the training samples, by default
    ``data.n_train``)."""
    schedule = cfg["nested"]["schedule"]
    layers = cfg["network"]["layers"]
    if not schedule:
        opt = cfg["optimizer"]
        if opt["epochs"] > 0:
            n = cfg["data"]["n_train"] if n_train is None else n_train
            return [(layers, opt["epochs"] * max(n // opt["batch_size"], 1))]
        return [(layers, opt["iterations"])]
    r = cfg["nested"]["refine"]
    n = len(schedule)
    return [(layers // r ** (n - 1 - k), m) for k, m in enumerate(schedule)]


class Problem:
    """The configured training problem on the ranks of ``comm``: data loaded once, networks on demand.

    ``cfg`` comes from :func:`braidnet.config.load_config` (or :func:`braidnet.config.check`): it is
    not checked again here.
    """

    def __init__(self, cfg: _config.Config, comm) -> None:
        from braidnet.groups import split_comm

        self.cfg = cfg
        self.comm = comm                #: every rank of the run
        self.X, self.y, self.X_val, self.y_val = load_data(cfg)
        #: the ranks that share the layers (one data-parallel group), and the communicator across
        #: the groups (None with one group)
        self.layer_comm, self.data_comm = comm, None
        if cfg["parallel"]["data"] > 1:
            self.layer_comm, self.data_comm = split_comm(comm, cfg["parallel"]["data"])
        #: (H, W) of image data (digits, idx), whose images are flattened to rows of H * W pixels here
        self.image_shape: Optional[Tuple[int, int]] = None
        if self.X.ndim == 3:
            self.image_shape = (int(self.X.shape[1]), int(self.X.shape[2]))
            self.X = self.X.reshape(len(self.X), -1)
            self.X_val = self.X_val.reshape(len(self.X_val), -1)
        self.n_features = self.X.shape[1]
        self.n_classes = int(max(self.y.max(), self.y_val.max() if len(self.y_val) else 0)) + 1
        n, B = len(self.y), cfg["optimizer"]["batch_size"]
        if B > n:
            raise _config.ConfigError(f"optimizer.batch_size={B} exceeds the {n} training samples of "
                                      f"data.dataset={cfg['data']['dataset']!r}; use at most {n}")
        #: samples per optimisation step (None: every sample, full batch) and their order
        self.batch_size: Optional[int] = B if 0 < B < n else None
        self.order: Optional[BatchOrder] = (BatchOrder(n, B, cfg["optimizer"]["batch_seed"], drop_last=True)
                                            if self.batch_size is not None else None)
        self.plan = level_plan(cfg, n)
        self._conv = self._conv_options()

    def _conv_options(self) -> Dict[str, Any]:
        """The ResNet arguments of a convolutional network (none for a dense one), checked against the data."""
        net = self.cfg["network"]
        if net["kind"] != "conv":
            return {}
        shape = tuple(net["image_shape"]) or self.image_shape
        pixels = shape[0] * shape[1]
        if self.n_features % pixels:
            raise _config.ConfigError(f"network.image_shape={list(shape)} does not fit the data: a sample of "
                                      f"{self.n_features} values is not c_in * {shape[0]} * {shape[1]}")
        if net["opening"] in ("replicate", "mnist") and self.n_features != pixels:
            raise _config.ConfigError(f"network.opening={net['opening']!r} replicates one image channel, but the "
                                      f"samples have {self.n_features // pixels} channels of {shape[0]} x {shape[1]}; "
                                      f"use network.opening='conv'")
        return {"kind": "conv", "kernel_size": net["kernel_size"], "image_shape": shape,
                "classifier": net["classifier"]}

    def close(self) -> None:
        """Free the communicators this problem split off (collective)."""
        if self.data_comm is not None:
            self.layer_comm.Free()
            self.data_comm.Free()
            self.layer_comm, self.data_comm = self.comm, None

    @property
    def validation(self) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """(X_val, y_val), or (None, None) without validation data."""
        return (self.X_val, self.y_val) if len(self.X_val) else (None, None)

    def network(self, layers: int) -> ResNet:
        """The configured ResNet with ``layers`` residual layers."""
        net = self.cfg["network"]
        return ResNet(self.n_features, self.n_classes, net["width"], layers, T=net["T"],
                      activation=net["activation"], opening=net["opening"],
                      bias=net["bias"], gamma_tik=net["gamma_tik"], gamma_ddt=net["gamma_ddt"],
                      gamma_class=net["gamma_class"], dtype=net["dtype"], **self._conv)

    def initial_params(self, layers: int, seed: Optional[int] = None) -> np.ndarray:
        """The configured initialisation of the ``layers``-layer network (seed: network.seed by default)."""
        net = self.cfg["network"]
        return self.network(layers).init_params(
            seed=net["seed"] if seed is None else seed,
            scale_opening=net["init_opening"] if net["opening"] in ("dense", "conv") else 0.0,
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

    @property
    def stochastic(self) -> bool:
        """SGD or Adam: a learning-rate step per optimisation step, no line search."""
        return self.cfg["optimizer"]["method"] in _config.STOCHASTIC

    @property
    def batches_per_epoch(self) -> int:
        """Optimisation steps per epoch (1 for full batch)."""
        return self.order.batches_per_epoch if self.order is not None else 1

    def schedule(self, steps: int) -> optim.LearningRate:
        """The learning-rate schedule of a level of ``steps`` steps (epochs of batches_per_epoch
        steps; a cosine spans the level's epochs)."""
        opt, kind = self.cfg["optimizer"], self.cfg["optimizer"]["lr_schedule"]
        extra: Dict[str, Any] = {}
        if kind == "step":
            extra = {"step_size": opt["lr_step_size"], "gamma": opt["lr_gamma"]}
        elif kind == "cosine":
            extra = {"total": max(1, math.ceil(steps / self.batches_per_epoch)), "lr_min": opt["lr_min"]}
        return optim.LearningRate(opt["lr"], kind, warmup=opt["lr_warmup"],
                                  steps_per_epoch=self.batches_per_epoch, **extra)

    def optimizer(self, dot, steps: int = 0):
        """A fresh optimiser: line search (working with the distributed inner product ``dot``), or
        SGD / Adam with the schedule of a level of ``steps`` steps."""
        opt = self.cfg["optimizer"]
        if opt["method"] == "sgd":
            return optim.SGD(self.schedule(steps), momentum=opt["momentum"], nesterov=opt["nesterov"])
        if opt["method"] == "adam":
            return optim.Adam(self.schedule(steps), beta1=opt["beta1"], beta2=opt["beta2"], eps=opt["eps"])
        common = dict(dot=dot, ls_factor=opt["ls_factor"], c1=opt["armijo_c"], ls_max_trials=opt["ls_trials"])
        if opt["method"] == "lbfgs":
            return optim.LBFGS(memory=opt["memory"], **common)
        if opt["method"] == "bfgs":
            return optim.BFGS(**common)
        return optim.SteepestDescent(**common)
