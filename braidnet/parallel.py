"""Layer-parallel forward and backward passes of a :class:`~braidnet.resnet.ResNet` with MGRIT.

The N residual layers are the N time steps of a Braid core on [0, T] (``ntime = N``, points
0..N, h = T/N): point 0 is the opening's output u_0, point N feeds the classifier.  The core splits
the N+1 points in contiguous blocks over the P ranks (the first (N+1) % P ranks one point more), and
the network is split the same way:

* **ownership**: residual layer n belongs to the owner of point n, the opening to the owner of
  point 0, the classifier to the owner of point N.  Each rank therefore holds one contiguous slice
  of the flat parameter vector (:attr:`ParallelNetwork.param_slice`) and the states of its own
  points; no rank ever holds the whole network's states.
* **primal solve** (:meth:`~ParallelNetwork.forward`): the step from tstart to tstop, on any level,
  applies the weights of layer round(tstart/h) with step size tstop - tstart.  The first point a
  rank owns on a level is stepped into from a point (and with a layer) that may belong to a rank
  to the left: those halo layers are fetched by :meth:`~ParallelNetwork.set_params`.
* **adjoint solve** (:meth:`~ParallelNetwork.backward`): a second core in reversed time on a
  communicator split with reversed keys, so adjoint point k = primal point N-k and a rank's adjoint
  points mirror its primal points (exactly when (N+1) % P == 0; otherwise a few boundary states,
  weights and adjoints are exchanged).  The adjoint step k0 -> k1 uses the primal state and the
  weights of layer N - k1.  The gradient of layer n is h (dF/dtheta(u_n))^T lambda_{n+1}.
* **validation**: a third (primal) core on the validation inputs.

Every exchange is planned once: each rank can compute every rank's needs and the owner of every
piece (the cores publish every rank's points and the level hierarchy, before any drive), so a plan is
a list of point-to-point transfers run with buffer-based ``Isend``/``Irecv`` of numpy arrays.  Reductions
gather the per-rank contributions and sum them in rank order, so every rank returns bit-identical
numbers.

The cores are built once and driven again at every call (warm restart: the current states are the
initial guess); only the weights change between drives, read through the pointers the apps hold
into arrays that are updated in place.

**Data parallelism** (``data_comm``, docs/design.md section 9): the ranks of ``comm`` are one *group*;
Q groups (the ranks at the same position in each group form ``data_comm``) each take a contiguous
shard of the batch (and of the validation batch; the first n % Q groups one sample more) and run
the same layer-parallel solves on it.  The layer map acts on each sample alone, so the groups'
MGRIT iterations are the full batch's restricted to their columns; only the loss, the accuracy,
the data part of the gradient, the residual norms and the warm states are combined across the
groups, every group then holds the same values and takes the same optimisation steps.  Each group
weighs its loss and lambda_N by its share of the batch, so the sums are the full batch's mean.

**Precision** (``net.dtype``, docs/design.md section 3): states, adjoints, the cores' vectors and
messages, the state exchanges and the warm states are in the network's dtype.  The parameters,
their exchange, gradients, loss, accuracy, regulariser and every reduction stay float64; a float32
network keeps float32 copies of its layer blocks (own and halo) for the kernels, refreshed by
:meth:`~ParallelNetwork.set_params`.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from braidnet import _kernels
from braidnet._checks import count
from braidnet.groups import DataGroups, shards, split_comm
from braidnet.resnet import ResNet
from braidnet.samplestates import SampleStates

log = logging.getLogger(__name__)

__all__ = ["ParallelNetwork", "split_comm", "DEFAULT_ABS_TOL", "DEFAULT_MAX_ITER", "WARM_POLICIES",
           "GUESSES"]

#: How a mini-batch network's MGRIT states start when the batch changes (:meth:`ParallelNetwork.use_batch`).
WARM_POLICIES = ("sample", "batch", "zero")
#: The initial guess of a cold solve (:class:`ParallelNetwork` ``guess``): every point at the value
#: of the core's first point (u_0, or lambda_N for the adjoint), or zeros.
GUESSES = ("constant", "zero")

#: Tolerance and iteration cap of an "exact" solve (``max_iter=None``), unless ``braid`` sets them.
DEFAULT_ABS_TOL = 1e-10
DEFAULT_MAX_ITER = 100
#: float32 networks: no solve asks for a residual below F32_TOL_FACTOR * eps32 * sqrt(values in the
#: states), the round-off floor of states of order 1 (a smaller positive abs_tol is raised to it)
F32_TOL_FACTOR = 10.0

Key = Tuple[str, int]   # ("W", layer) | ("U", primal point) | ("L", primal point of an adjoint)


def _first_multiple(stride: int, lo: int, hi: int) -> Optional[int]:
    """The smallest multiple j >= 1 of stride in [lo, hi], or None."""
    j = -(-max(lo, 1) // stride) * stride
    return j if j <= hi else None


class _Plan:
    """Point-to-point transfers of numpy blocks, agreed on by every rank without communication.

    ``needs[q]`` lists the keys rank q must receive, ``owner(key)`` the rank that holds each.  A
    transfer's tag is its position among the transfers of the same (source, destination) pair.
    """

    def __init__(self, comm, needs: List[Iterable[Key]], owner: Callable[[Key], int]) -> None:
        self.comm = comm
        me = comm.Get_rank()
        count: Dict[Tuple[int, int], int] = {}
        self.sends: List[Tuple[int, Key, int]] = []
        self.recvs: List[Tuple[int, Key, int]] = []
        for q, keys in enumerate(needs):
            for key in sorted(set(keys)):
                src = owner(key)
                if src == q:
                    continue
                tag = count.get((src, q), 0)
                count[(src, q)] = tag + 1
                if src == me:
                    self.sends.append((q, key, tag))
                if q == me:
                    self.recvs.append((src, key, tag))

    @property
    def incoming(self) -> List[Key]:
        return [key for _, key, _ in self.recvs]

    def run(self, source: Callable[[Key], np.ndarray], target: Callable[[Key], np.ndarray]) -> None:
        """Send ``source(key)`` for every outgoing key, receive into ``target(key)``; wait for all."""
        if not self.sends and not self.recvs:
            return
        from mpi4py import MPI
        reqs = [self.comm.Irecv(target(key), source=src, tag=tag) for src, key, tag in self.recvs]
        reqs += [self.comm.Isend(source(key), dest=dst, tag=tag) for dst, key, tag in self.sends]
        MPI.Request.Waitall(reqs)


def _tol(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
    return float(value)


def _check_braid_options(braid: Optional[dict], net: ResNet) -> dict:
    """Validate the core options (same outcome on every rank, no MPI); return them normalised."""
    from braidnet import braid as _braid

    if braid is None:
        return {}
    if not isinstance(braid, dict):
        raise ValueError(f"braid must be a dict of core options, got {type(braid).__name__}")
    opts = dict(braid)
    if "rel_tol" in opts:
        raise ValueError("braid: rel_tol is not supported by ParallelNetwork (forward/backward set an "
                         "absolute tolerance at every drive); give abs_tol")
    opts = _braid.check_options(0.0, net.T, net.n_layers, **opts)
    if opts.get("access_level", 1) < 1:
        raise ValueError("braid: access_level must be >= 1 (the final access collects the states)")
    return opts


class ParallelNetwork:
    """A ResNet on one batch, distributed over the ranks of ``comm`` layer by layer.

    Args:
        net: the network (its layout, activation, T and regularisation weights).
        X, Y: training inputs (n_samples, n_features) and labels or one-hot rows; every rank passes
            the same data (each keeps only what it needs: its group's shard).
        comm: the time communicator (default ``MPI.COMM_WORLD``); collective for all methods
            except :meth:`scatter`.
        data_comm: None (one group), or the communicator linking this rank with the ranks at the
            same position in the other data-parallel groups (:func:`split_comm` makes both);
            every method is then collective over both.
        X_val, Y_val: optional validation data (both or neither).
        braid: options of the three cores (``max_levels``, ``min_coarse``, ``cfactor``,
            ``nrelax``, ``fmg``, ``nfmg``, ``skip``, ``final_fc_relax``, ``storage``, ``tnorm``,
            ``print_level`` (default 0), ``access_level``, ``seq_soln``, and ``abs_tol``/``max_iter``,
            which become the defaults of an exact solve).
        batch_size: None (default) or >= the number of samples: every solve is on all of X (full
            batch).  Otherwise mini-batch mode: the cores are built for batches of ``batch_size``
            samples (this group's shard of them), and :meth:`use_batch` chooses the batch.
        warm: mini-batch mode: how the primal and adjoint states start when the batch changes
            (:data:`WARM_POLICIES`): ``"sample"`` each sample's states from the last step that used
            it (kept per sample, zeros before its first use), ``"batch"`` the previous batch's
            states as they are, ``"zero"`` a cold restart.
        guess: the initial guess of a cold solve (:data:`GUESSES`; docs/design.md section 4.4a):
            ``"constant"`` (default) starts every point of the primal and validation cores at u_0 and
            every point of the adjoint core at lambda_N, ``"zero"`` at zeros.  A solve is cold when
            its core starts without states: the first solve of a network whose states were not
            loaded (:meth:`load_warm_states`), and with ``warm="zero"`` the first after each batch
            change (with ``warm="sample"``, samples first used after the first batch start from
            zeros).  A skipped first iteration (``skip``) overwrites the guess, so it then changes
            nothing but round-off.

    Bad input raises ``ValueError`` before any MPI call.  Call :meth:`set_params` before
    :meth:`forward`, and :meth:`forward` before :meth:`backward`.
    """

    def __init__(self, net: ResNet, X, Y, comm=None, X_val=None, Y_val=None,
                 braid: Optional[dict] = None, data_comm=None, batch_size: Optional[int] = None,
                 warm: str = "sample", guess: str = "constant") -> None:
        if not isinstance(net, ResNet):
            raise ValueError(f"net must be a braidnet.resnet.ResNet, got {type(net).__name__}")
        from mpi4py import MPI

        if comm is None:
            comm = MPI.COMM_WORLD
        for name, c in (("comm", comm), ("data_comm", data_comm)):
            if c is not None and (not isinstance(c, MPI.Intracomm) or c == MPI.COMM_NULL):
                raise ValueError(f"{name} must be an mpi4py intracommunicator, got {c!r}")
        self.data_groups = 1 if data_comm is None else data_comm.Get_size()     # Q
        self.data_group = 0 if data_comm is None else data_comm.Get_rank()      # this rank's group
        x = net.prepare_inputs(X)
        targets = net.prepare_targets(Y, x.shape[1])
        if (X_val is None) != (Y_val is None):
            raise ValueError("give both X_val and Y_val, or neither")
        xv = tv = None
        if X_val is not None:
            xv = net.prepare_inputs(X_val)
            tv = net.prepare_targets(Y_val, xv.shape[1])
        n = x.shape[1]
        if batch_size is not None and count(batch_size, "batch_size", 1) >= n:
            batch_size = None                       # a batch of every sample is the full batch
        if warm not in WARM_POLICIES:
            raise ValueError(f"warm must be one of {', '.join(WARM_POLICIES)}, got warm={warm!r}")
        if guess not in GUESSES:
            raise ValueError(f"guess must be one of {', '.join(GUESSES)}, got guess={guess!r}")
        if batch_size is not None and batch_size < self.data_groups:
            raise ValueError(f"batch_size={batch_size} cannot be split over {self.data_groups} data-parallel "
                             f"groups (need batch_size >= groups)")
        #: samples per step (None: full batch, every sample) and the mini-batch warm-start policy
        self.batch_size, self.warm = batch_size, warm
        #: the initial guess of a cold solve (:data:`GUESSES`)
        self.guess = guess
        self.n_samples = n
        # this group's shard of the samples (of each batch), and its weight in the batch means
        self._shards = shards(n if batch_size is None else batch_size, self.data_groups)
        self._vshards = shards(xv.shape[1], self.data_groups) if xv is not None else None
        a, b = self._shards[self.data_group]
        x_all = t_all = None
        if batch_size is None:
            x, targets = np.ascontiguousarray(x[:, a:b]), np.ascontiguousarray(targets[:, a:b])
        else:       # the inputs and targets of the current batch; use_batch fills them
            x_all, t_all = x, targets
            x, targets = np.zeros((x.shape[0], b - a)), np.zeros((targets.shape[0], b - a))
        self._weight = (b - a) / self._shards[-1][1]
        self._vweight = 0.0
        if xv is not None:
            a, b = self._vshards[self.data_group]
            xv, tv = np.ascontiguousarray(xv[:, a:b]), np.ascontiguousarray(tv[:, a:b])
            self._vweight = (b - a) / self._vshards[-1][1]
        opts = _check_braid_options(braid, net)
        self._abs_tol = opts.pop("abs_tol", DEFAULT_ABS_TOL)
        self._max_iter = opts.pop("max_iter", DEFAULT_MAX_ITER)
        opts.setdefault("print_level", 0)
        self._core_opts = dict(opts, max_iter=self._max_iter, abs_tol=self._abs_tol)

        self.net = net
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.n_layers = net.layout.n_layers
        self._act = _kernels.ACTIVATIONS[net.activation]
        self._dtype = net.dtype         # states and kernels; parameters stay float64
        self._bias = _kernels.BIAS_CHANNEL if net.layout.bias == "channel" else _kernels.BIAS_SCALAR

        # ---- MPI work from here on --------------------------------------------------------
        self._closed = False
        self._xcomm = comm.Dup()                                   # our own exchanges
        self._groups = DataGroups(data_comm)                     # sums and gathers across the groups
        self._tcomm = comm.Dup()                                   # primal core
        self._vcomm = comm.Dup()                                   # validation core (never shares messages)
        self._acomm = comm.Split(0, self.size - 1 - self.rank)     # adjoint core: reversed ranks
        # The cores first: they own the level hierarchy and the distribution, which everything below
        # is planned from.  Their apps are configured once the arrays exist (a core reads an app's
        # tables only when driven).
        self._build_cores(x.shape[1])
        self._distribute()
        self._plans = self._plan()
        self._x = x if self.owns_opening else None
        self._targets = targets if self.owns_classifier else None
        # mini-batch mode: the whole training set where a batch is read from (opening's owner: the
        # inputs, classifier's owner: the targets), the current batch and the per-sample states
        self._x_all = x_all if self.owns_opening else None
        self._t_all = t_all if self.owns_classifier else None
        self._batch: Optional[np.ndarray] = None        # this group's sample indices of the batch
        self._allocate(x.shape[1])
        self._wire_apps()
        self._vapp = self._validation = None            # built below: _warm_rows has primal and adjoint
        self._samples: Optional[SampleStates] = None    # the "sample" policy's store
        if batch_size is not None and warm == "sample":
            points = {name: (ranges[self.rank][0], len(own))
                      for name, (ranges, _, own) in self._warm_rows(endpoints=True).items()}
            self._samples = SampleStates(n, points, self.net.state_size, self._dtype, self._groups)
        if xv is not None:
            self._build_validation(xv, tv)

        self._driven: set = set()       # ids of the cores driven at least once
        # ids of the cores whose next drive initialises every point (no states loaded): the stores
        # take the initial guess first (a core initialises a point from its store)
        self._cold: set = {id(c) for c in (self._primal, self._adjoint, self._validation) if c is not None}
        self._skip_later: set = set()   # ids of loaded cores that skip (skip "every") from their 2nd drive on
        self._u0_fresh = False          # u_0 computed (and sent) for the current parameters
        self._u0v_fresh = False
        self._forward_done = False      # forward() ran with the current parameters
        self._loss_parts: Optional[Tuple[float, np.ndarray]] = None   # (loss, classifier gradient)
        self._gradient_layers = 0       # layer gradients assembled (work count)
        self._ds_fresh = False          # the kept sigma' are those of the current forward's states
        self._tracing = False           # set_trace(True): the primal and adjoint cores record events

    # ------------------------------------------------------------------------------------------
    # construction
    def _build_cores(self, batch: int) -> None:
        """The primal and adjoint apps and cores; the level hierarchy (strides) they build."""
        from braidnet._layerapp import LayerApp
        from braidnet.braid import Core

        N, T, width, conv = self.n_layers, self.net.T, self.net.state_size, self.net.conv_geometry
        self._papp = LayerApp(N, T, width, batch, self._act, self._bias, False, self._dtype, conv=conv)
        self._aapp = LayerApp(N, T, width, batch, self._act, self._bias, True, self._dtype, conv=conv)
        self._primal = Core(self._papp, 0.0, T, N, comm=self._tcomm, **self._core_opts)
        self._adjoint = Core(self._aapp, 0.0, T, N, comm=self._acomm, **self._core_opts)
        self.levels = list(self._primal.level_strides)
        self._alevels = list(self._adjoint.level_strides)

    def _distribute(self) -> None:
        """Ownership as the cores distribute the points: primal points [lo, hi], adjoint points
        [alo, ahi] (rank q is adjoint rank P-1-q), the layers and the parameter slice that follow."""
        L, N, P, r = self.net.layout, self.n_layers, self.size, self.rank
        ranges = self._primal.distributions
        adist = self._adjoint.distributions
        self._ranges, self._aranges = ranges, [adist[P - 1 - q] for q in range(P)]
        self.point_range = ranges[r]
        self.adjoint_range = self._aranges[r]
        lo, hi = ranges[r]
        self.layer_range = (lo, min(hi + 1, N)) if lo <= hi else (N, N)
        self.owns_opening = lo == 0 <= hi
        self.owns_classifier = lo <= N <= hi
        starts = [0 if q_lo == 0 else (L.layer_offset(q_lo) if q_lo <= q_hi else L.size)
                  for q_lo, q_hi in ranges]
        stops = [L.size if q_lo <= N <= q_hi else (L.layer_offset(q_hi + 1) if q_lo <= q_hi else L.size)
                 for q_lo, q_hi in ranges]
        self._counts = [b - a for a, b in zip(starts, stops)]
        self._displs = starts
        self.param_slice = slice(starts[r], stops[r])

    def _plan(self) -> Dict[str, _Plan]:
        """The halo exchanges, planned by every rank alike from every rank's needs."""
        N, ranges, aranges = self.n_layers, self._ranges, self._aranges

        def owner(key: Key) -> int:
            kind, i = key
            # lambda_p lives on the adjoint owner of adjoint point N - p, except lambda_N, which the
            # classifier's owner computes (the adjoint owner of point 0 differs when P > N + 1)
            adjoint = kind == "L" and i < N
            p = N - i if adjoint else i
            for q, (q_lo, q_hi) in enumerate(aranges if adjoint else ranges):
                if q_lo <= p <= q_hi:
                    return q
            raise AssertionError(f"no owner of {key}")

        needs = [self._needs(q, ranges[q], aranges[q]) for q in range(self.size)]
        return {name: _Plan(self._xcomm, [n[name] for n in needs], owner)
                for name in ("weights", "u0", "pre_adjoint", "post_adjoint")}

    def _allocate(self, batch: int) -> None:
        """The local parameters, states and adjoints, and the halo arrays (allocated once: the apps
        keep pointers into them)."""
        L, N, width, ls = self.net.layout, self.n_layers, self.net.state_size, self.net.layout.layer_size
        dt = self._dtype
        self._theta = np.zeros(self._counts[self.rank])
        self._theta_set = False
        # Primal states of own points m >= 1 (the final access fills them), adjoints of own adjoint
        # points k >= 1.  Point 0 is kept apart: u_0 (opening) and lambda_N (classifier) are
        # computed here, never taken from the core (see _layerapp on warm restarts).
        (lo, hi), (alo, ahi) = self.point_range, self.adjoint_range
        p1, a1 = max(lo, 1), max(alo, 1)
        self._U = np.zeros((max(hi - p1 + 1, 0), width, batch), dt)
        self._Lam = np.zeros((max(ahi - a1 + 1, 0), width, batch), dt)
        self._u0 = np.zeros((width, batch), dt) if self.owns_opening else None
        self._lamN = np.zeros((width, batch), dt) if self.owns_classifier else None
        self._state: Dict[int, np.ndarray] = {m: self._U[m - p1] for m in range(p1, hi + 1)}
        self._lam: Dict[int, np.ndarray] = {N - k: self._Lam[k - a1] for k in range(a1, ahi + 1)}
        if self.owns_opening:
            self._state[0] = self._u0
        if self.owns_classifier:
            self._lam[N] = self._lamN
        self._layer_blocks: Dict[int, np.ndarray] = {}
        for n in range(*self.layer_range):
            off = L.layer_offset(n) - self.param_slice.start
            self._layer_blocks[n] = self._theta[off:off + ls]
        for name in ("weights", "u0", "pre_adjoint", "post_adjoint"):
            for kind, i in self._plans[name].incoming:
                if kind == "W":
                    self._layer_blocks[i] = np.zeros(ls)
                elif kind == "U":
                    self._state[i] = np.zeros((width, batch), dt)
                else:
                    self._lam[i] = np.zeros((width, batch), dt)
        # the kernels' weights: the float64 blocks themselves, or float32 copies (set_params)
        self._kblocks: Dict[int, np.ndarray] = (
            self._layer_blocks if dt == np.float64
            else {n: np.zeros(ls, dt) for n in self._layer_blocks})
        # sigma'(W_m u_m + b_m) of each layer the adjoint steps through here, kept per backward()
        # where the serial kernels keep it too: every adjoint step (any level, any iteration) and
        # the layer gradient then cost one GEMM fewer (dense layers; one more state block each)
        # (ReLU's as bits: _kernels.deriv_block)
        from braidnet._kernels import deriv_block, keeps_derivs
        keep = self.net.conv_geometry is None and keeps_derivs(width, dt)
        ds_shape, ds_dtype = deriv_block(self._act, width, batch, dt)
        self._ds: Dict[int, np.ndarray] = {
            m: np.zeros(ds_shape, ds_dtype) for m in self._state
            if keep and m < N and m in self._kblocks}

    def _wire_apps(self) -> None:
        """Hand the primal and adjoint apps their weights, states and store arrays."""
        N = self.n_layers
        (lo, hi), (alo, ahi) = self.point_range, self.adjoint_range
        for n, blk in self._kblocks.items():
            self._papp.set_layer(n, blk)
            self._aapp.set_layer(n, blk)
        for m in range(max(lo, 1), hi + 1):
            self._papp.set_store(m, self._state[m])
        self._papp.set_first(self._state.get(0))
        for m, u in self._state.items():
            if m < N:
                self._aapp.set_state(m, u)
        for m, ds in self._ds.items():
            self._aapp.set_deriv(m, ds)
            self._papp.set_deriv(m, ds)     # fine steps from a final state fill it on the way
        for k in range(max(alo, 1), ahi + 1):
            self._aapp.set_store(k, self._lam[N - k])
        self._aapp.set_first(self._lam.get(N))

    def _build_validation(self, xv: np.ndarray, tv: np.ndarray) -> None:
        """A primal core of its own on the validation batch."""
        from braidnet._layerapp import LayerApp
        from braidnet.braid import Core

        N, T, width, vb = self.n_layers, self.net.T, self.net.state_size, xv.shape[1]
        lo, hi = self.point_range
        p1 = max(lo, 1)
        self._xv = xv if self.owns_opening else None
        self._tv = tv if self.owns_classifier else None
        needs_u0 = self.owns_opening or ("U", 0) in self._plans["u0"].incoming
        self._u0v = np.zeros((width, vb), self._dtype) if needs_u0 else None
        # all own points are kept (not only u_N): they are the warm states of a checkpoint
        self._Uv = np.zeros((max(hi - p1 + 1, 0), width, vb), self._dtype)
        self._vapp = LayerApp(N, T, width, vb, self._act, self._bias, False, self._dtype,
                              conv=self.net.conv_geometry)
        for n, blk in self._kblocks.items():
            self._vapp.set_layer(n, blk)
        for m in range(p1, hi + 1):
            self._vapp.set_store(m, self._Uv[m - p1])
        self._vapp.set_first(self._u0v)
        # same ntime, options and communicator size as the primal core: the same points per rank
        self._validation = Core(self._vapp, 0.0, T, N, comm=self._vcomm, **self._core_opts)

    # ------------------------------------------------------------------------------------------
    # planning
    def _needs(self, q: int, rng: Tuple[int, int], arng: Tuple[int, int]) -> Dict[str, List[Key]]:
        """What rank q (primal points rng, adjoint points arng) receives, per exchange."""
        N = self.n_layers
        lo, hi = rng
        alo, ahi = arng
        own_layers = set(range(lo, min(hi + 1, N))) if lo <= hi else set()
        own_points = set(range(lo, hi + 1)) if lo <= hi else set()
        own_lams = {N - k for k in range(max(alo, 1), ahi + 1)} | ({N} if N in own_points else set())
        weights: set = set()
        pre: set = set()
        steps_from_0 = False          # does q step out of point 0 on some level?
        # primal: the first point j of each level is stepped into from (and with the layer of) j - s
        for s in self.levels:
            j = _first_multiple(s, lo, hi) if lo <= hi else None
            if j is not None:
                weights.add(j - s)
                steps_from_0 |= j == s
        # adjoint: the step into adjoint point k uses the state and weights of primal point N - k;
        # the one out of adjoint point 0 reads the current lambda_N
        for k in range(max(alo, 1), ahi + 1):
            weights.add(N - k)
            pre.add(("U", N - k))
        for s in self._alevels:
            if alo <= ahi and _first_multiple(s, alo, ahi) == s:
                pre.add(("L", N))
        # gradient of own layers: lambda_{n+1}; of the opening: lambda_0
        lams = {n + 1 for n in own_layers} | ({0} if 0 in own_points else set())
        if N in lams:
            pre.add(("L", N))
        # the regulariser's time-derivative term needs the neighbour layers
        if self.net.gamma_ddt > 0 and own_layers:
            weights |= {n for n in (min(own_layers) - 1, max(own_layers) + 1) if 0 <= n < N}
        u0 = [("U", 0)] if steps_from_0 and 0 not in own_points else []
        return {
            "weights": [("W", n) for n in weights if n not in own_layers],
            "u0": u0,
            # a state already delivered by the u0 exchange is not sent again
            "pre_adjoint": [key for key in pre
                            if (key[0] == "U" and key[1] not in own_points and key not in u0)
                            or (key[0] == "L" and key[1] not in own_lams)],
            "post_adjoint": [("L", p) for p in lams if p != N and p not in own_lams],
        }

    # ------------------------------------------------------------------------------------------
    # the distributed parameter vector
    def scatter(self, theta_full: np.ndarray) -> np.ndarray:
        """This rank's slice (a copy) of the full parameter vector."""
        theta_full = self._vector(theta_full, self.net.n_params, "theta_full")
        return theta_full[self.param_slice].copy()

    def gather(self, theta_local: np.ndarray, root: Optional[int] = 0) -> Optional[np.ndarray]:
        """The full vector from every rank's slice: on ``root`` (None elsewhere), or on every rank."""
        theta_local = np.ascontiguousarray(self._vector(theta_local, self._counts[self.rank], "theta_local"))
        self._root(root)
        self._check_open()
        full = np.empty(self.net.n_params) if root is None or root == self.rank else None
        spec = [full, (self._counts, self._displs)] if full is not None else None
        if root is None:
            self._xcomm.Allgatherv(theta_local, spec)
        else:
            self._xcomm.Gatherv(theta_local, spec, root=root)
        return full

    def dot(self, a_local: np.ndarray, b_local: np.ndarray) -> float:
        """The global dot product of two distributed vectors (identical on every rank)."""
        n = self._counts[self.rank]
        a_local = self._vector(a_local, n, "a_local")
        b_local = self._vector(b_local, n, "b_local")
        self._check_open()
        return float(self._sum(np.array([np.dot(a_local, b_local)]))[0])

    def set_params(self, theta_local: np.ndarray) -> None:
        """Take this rank's parameter slice (copied) and fetch the halo layers from the neighbours."""
        theta_local = self._vector(theta_local, self._counts[self.rank], "theta_local")
        if not np.all(np.isfinite(theta_local)):
            raise ValueError("theta_local contains NaN or inf")
        self._check_open()
        np.copyto(self._theta, theta_local)
        self._plans["weights"].run(lambda key: self._layer_blocks[key[1]],
                                   lambda key: self._layer_blocks[key[1]])
        if self._kblocks is not self._layer_blocks:      # float32: round the weights once
            for n, blk in self._layer_blocks.items():
                np.copyto(self._kblocks[n], blk, casting="same_kind")
        self._theta_set = True
        if self.net.layout.opening_size or not self._u0_fresh:     # u_0 depends on the parameters
            self._u0_fresh = self._u0v_fresh = False
        self._forward_done = False

    # ------------------------------------------------------------------------------------------
    # solves
    def forward(self, max_iter: Optional[int] = None, abs_tol: Optional[float] = None) -> dict:
        """Primal MGRIT solve with the current parameters (warm-started from the last one).

        ``max_iter=None`` solves to the default tolerance; otherwise at most ``max_iter``
        iterations (or until ``abs_tol``, default the tight one).  Returns ``{"loss", "objective",
        "accuracy", "rnorm", "iterations"}``, the same on every rank (accuracy in percent, rnorm
        the last MGRIT residual norm, -1 if none was computed).  With data-parallel groups: the
        whole batch's loss and accuracy, rnorm the 2-norm of the groups' residual norms (the whole
        batch's with the default ``tnorm``), iterations the most any group took.
        """
        opts = self._drive_options(max_iter, abs_tol)
        self._ready()
        if self.batch_size is not None and self._batch is None:
            raise RuntimeError("a mini-batch network needs use_batch() before forward()")
        L = self.net.layout
        if not self._u0_fresh:
            if self.owns_opening:
                np.copyto(self._u0, self.net.opening_forward(self._own(L.opening_slice), self._x))
            self._plans["u0"].run(lambda key: self._state[0], lambda key: self._state[0])
            self._u0_fresh = True
        self._papp.reset_derivs()              # the weights may have changed since the last drive
        self._initial_guess("primal", self._primal, 0, self._u0)
        res = self._drive(self._primal, opts)
        loss = acc = 0.0
        if self.owns_classifier:
            uN = self._state[self.n_layers]
            theta_cls = self._own(L.classifier_slice)
            loss, g_cls, lamN = self.net.classifier_loss(theta_cls, uN, self._targets)
            if self.data_groups > 1:        # this shard's share of the batch mean
                loss, g_cls, lamN = loss * self._weight, g_cls * self._weight, lamN * self._weight
            np.copyto(self._lamN, lamN)
            self._loss_parts = (loss, g_cls)
            acc = self._correct(theta_cls, uN, self._targets)
        self._ds_fresh = False
        loss, reg, acc = self._sum(np.array([loss, self._regularizer(gradient=False)[0], acc]))
        loss, acc = self._groups.sum(np.array([loss, acc]))
        acc = 100.0 * (acc / self._shards[-1][1])
        self._forward_done = True
        rnorm, iters = self._groups.solve_info(self._rnorm(res), int(res.iterations))
        return {"loss": float(loss), "objective": float(loss + reg), "accuracy": float(acc),
                "rnorm": rnorm, "iterations": iters}

    def backward(self, max_iter: Optional[int] = None,
                 abs_tol: Optional[float] = None) -> Tuple[np.ndarray, dict]:
        """Adjoint MGRIT solve after :meth:`forward`; the objective's gradient on this rank's slice.

        Returns ``(gradient, {"rnorm", "iterations"})``; see :meth:`forward` for the arguments.
        """
        opts = self._drive_options(max_iter, abs_tol)
        self._ready()
        if not self._forward_done:
            raise RuntimeError("backward() needs forward() with the current parameters first")
        net, L = self.net, self.net.layout
        self._plans["pre_adjoint"].run(self._piece, self._piece)
        if self._ds and not self._ds_fresh:     # once per forward (drop mode calls this again)
            self._aapp.update_derivs(skip=self._papp.derivs_valid)
            self._ds_fresh = True
        self._initial_guess("adjoint", self._adjoint, self.n_layers, self._lamN)
        res = self._drive(self._adjoint, opts)
        self._plans["post_adjoint"].run(self._piece, self._piece)

        reg_g = self._regularizer()[1]
        # the data part is summed over the groups, the regulariser (the same in each) added once
        g = np.zeros_like(reg_g) if self.data_groups > 1 else reg_g
        off = self.param_slice.start
        self._gradient_layers += self.layer_range[1] - self.layer_range[0]
        for n in range(*self.layer_range):
            s = L.layer_slice(n)
            self._aapp.add_gradient(n, self._lam[n + 1], g[s.start - off:s.stop - off])
        if self.owns_opening and L.opening_size:
            g[L.opening_slice] += net.opening_gradient(self._own(L.opening_slice), self._x, self._lam[0])
        if self.owns_classifier:
            s = L.classifier_slice
            g[s.start - off:s.stop - off] += self._loss_parts[1]
        if self.data_groups > 1:
            g = self._groups.sum(g)
            g += reg_g
        rnorm, iters = self._groups.solve_info(self._rnorm(res), int(res.iterations))
        return g, {"rnorm": rnorm, "iterations": iters}

    def validate(self, max_iter: Optional[int] = None, abs_tol: Optional[float] = None) -> float:
        """Validation accuracy in percent (a layer-parallel forward solve); nan without data."""
        opts = self._drive_options(max_iter, abs_tol)
        if self._validation is None:
            return float("nan")
        self._ready()
        L = self.net.layout
        if not self._u0v_fresh:
            if self.owns_opening:
                np.copyto(self._u0v, self.net.opening_forward(self._own(L.opening_slice), self._xv))
            self._plans["u0"].run(lambda key: self._u0v, lambda key: self._u0v)
            self._u0v_fresh = True
        self._initial_guess("validation", self._validation, 0, self._u0v)
        self._drive(self._validation, opts)
        acc = 0.0
        if self.owns_classifier:
            acc = self._correct(self._own(L.classifier_slice), self._Uv[-1], self._tv)
        return 100.0 * (float(self._groups.sum(self._sum(np.array([acc])))[0]) / self._vshards[-1][1])

    def warm_states(self, root: Optional[int] = 0, endpoints: bool = False) -> Dict[str, Optional[np.ndarray]]:
        """The MGRIT states the next drives warm-start from, whole, for a checkpoint (collective).

        Returns ``{"primal": u, "adjoint": lam[, "validation": u_val]}``, each of shape
        (N+1, width, batch) and of the network's dtype, indexed by primal point (``lam[p]`` = lambda_p), on ``root`` (None
        elsewhere) or on every rank (``root=None``).  In mini-batch mode ``batch`` is the batch size,
        except with ``warm="sample"``: the primal and adjoint arrays are then the per-sample states of
        every training sample, (N+1, width, n_samples), the current batch's saved first (zeros for a
        sample not used yet); any (P, Q) loads them.  They are the fine states of each core's last
        final access; a core's warm state is its C-point values, which these contain.  The rows the
        cores never hold (u_0 of the primal and validation cores, lambda_N of the adjoint) are zeros,
        or with ``endpoints=True`` the current u_0 / lambda_N: whole trajectories, as a refinement
        in time interpolates them (:func:`braidnet.nested.interpolate_states`).
        """
        self._check_open()
        self._root(root)
        samples = self._samples
        if samples is not None:
            samples.save(self._batch, self._store_arrays(endpoints=True))
        out: Dict[str, Optional[np.ndarray]] = {}
        for name, rows in self._warm_rows(endpoints).items():
            if samples is not None and name in samples:
                # every group holds every sample's states (use_batch exchanges them): group 0's
                ranges, _, own = rows
                out[name] = self._gather_points(ranges, samples.n_samples, samples.export(name, own), root)
                if root is not None and self.data_group != 0:
                    out[name] = None
            else:
                out[name] = self._groups.side_by_side(self._gather_points(*rows, root=root), root)
        return out

    def load_warm_states(self, states: Dict[str, np.ndarray]) -> None:
        """Start the cores from saved :meth:`warm_states` (any rank count) instead of zeros.

        Call it before the cores' first solves (collective only in that it must be called on every
        rank).  Keys that are missing leave that core cold.  The first drive of a loaded core then
        runs as a warm restart does (skip = 0, no sequential initial solve), so a resumed run
        repeats the uninterrupted one exactly.  Except with ``skip="every"``: a loaded core's first
        drive does not skip (the later ones do), so a resumed run repeats the uninterrupted one to
        round-off only (peaks, 6 iterations resumed at 3: objective and gradient norm within 1e-13
        relative), not bit for bit.
        """
        self._check_open()
        N, width = self.n_layers, self.net.state_size
        # (core, the group's samples [a, b) of the whole batch, whole batch)
        whole = self.n_samples if self._samples is not None else self._shards[-1][1]
        cores = {"primal": (self._primal, self._shards[self.data_group], whole),
                 "adjoint": (self._adjoint, self._shards[self.data_group], whole)}
        if self._validation is not None:
            cores["validation"] = (self._validation, self._vshards[self.data_group], self._vshards[-1][1])
        unknown = sorted(set(states) - set(cores))
        if unknown:
            raise ValueError(f"unknown warm-state keys {unknown}; this network has {sorted(cores)}")
        for name, arr in states.items():
            shape = (N + 1, width, cores[name][2])
            a = np.asarray(arr)
            if a.dtype != self._dtype or a.shape != shape or not np.all(np.isfinite(a)):
                raise ValueError(f"warm state {name!r} must be a finite {self._dtype.name} array of shape "
                                 f"{shape}, got {a.dtype} {a.shape}")
            if id(cores[name][0]) in self._driven:
                raise RuntimeError(f"load_warm_states: the {name} core has been driven already")
        rows = self._warm_rows()
        for name, arr in states.items():
            ranges, _, own = rows[name]
            if self._samples is not None and name in self._samples:    # use_batch loads a batch's
                self._samples.restore(name, arr)
                continue
            a, b = cores[name][1]
            for p, dst in zip(range(ranges[self.rank][0], ranges[self.rank][1] + 1), own):
                if dst is not None:
                    np.copyto(dst, arr[p][:, a:b])
            self._as_loaded(cores[name][0])

    def use_batch(self, indices) -> None:
        """Train on the samples ``indices`` from now on (mini-batch mode; collective).

        Every rank passes the same ``batch_size`` indices into the training set; data-parallel group
        q takes ``batches.shard(indices, q, Q)``.  The opening's and the classifier's owners copy
        the batch's inputs and targets, u_0 is recomputed at the next :meth:`forward`, and the
        primal and adjoint states start as the ``warm`` policy says: ``"sample"`` saves the current
        batch's final states per sample, restarts the cores and loads the new batch's samples'
        states as warm states (as :meth:`load_warm_states` does); ``"batch"`` keeps the states as
        they are; ``"zero"`` restarts the cores from zeros.  The validation core is not touched.
        """
        from braidnet.batches import shard

        self._check_open()
        if self.batch_size is None:
            raise RuntimeError("use_batch() needs a mini-batch network (batch_size < number of samples)")
        idx = np.asarray(indices)
        if idx.shape != (self.batch_size,) or idx.dtype.kind not in "iu" \
                or idx.min() < 0 or idx.max() >= self.n_samples:
            raise ValueError(f"indices must be {self.batch_size} integers in [0, {self.n_samples}), "
                             f"got {idx.dtype} {idx.shape}")
        mine = np.array(shard(idx, self.data_group, self.data_groups), dtype=np.int64)
        first = self._batch is None
        if self._samples is not None:
            if not first:
                self._samples.save(self._batch, self._store_arrays(endpoints=True))
                self._restart_training()
            if self._samples.loaded or not first:
                self._samples.load(mine, self._store_arrays())
                self._as_loaded(self._primal)
                self._as_loaded(self._adjoint)
        elif self.warm == "zero":
            self._restart_training()
            self._cold.update((id(self._primal), id(self._adjoint)))
        self._batch = mine
        if self.owns_opening:
            np.copyto(self._x, self._x_all[:, mine])
        if self.owns_classifier:
            np.copyto(self._targets, self._t_all[:, mine])
        self._u0_fresh = self._forward_done = False

    def _as_loaded(self, core) -> None:
        """``core``'s next drive starts from the states in its store arrays as a warm restart does
        (no skip, no sequential initial solve); with skip "every" it skips again from the drive
        after (see :meth:`load_warm_states`)."""
        core.set_options(skip=0, seq_soln=0)
        self._cold.discard(id(core))
        if self._core_opts.get("skip") == "every":
            self._skip_later.add(id(core))

    def _restart_training(self) -> None:
        """New primal and adjoint cores (their first drive initialises every point from the store
        arrays); the validation core keeps its states."""
        self._new_cores(("_primal", "_adjoint"))
        self._u0_fresh = self._forward_done = False

    def step_counts(self) -> Dict[str, int]:
        """Work done since this network was built, summed over the ranks (collective).

        ``{"primal", "adjoint", "validation"}``: layer steps the three cores applied (every level of
        every drive; a step costs the same on every level, width and batch being fixed);
        ``"gradient"``: layer gradients assembled by :meth:`backward`.  Identical on every rank.
        With data-parallel groups, in whole-batch steps: each group's steps weighted by its share
        of the batch (the same numbers as one group, when the groups iterate alike).
        """
        self._check_open()
        vsteps = self._vapp.steps if self._vapp is not None else 0
        local = np.array([self._papp.steps, self._aapp.steps, vsteps, self._gradient_layers], dtype=np.int64)
        total = np.empty_like(local)
        from mpi4py import MPI
        self._xcomm.Allreduce(local, total, op=MPI.SUM)
        if self.data_groups > 1:
            # a step on a shard is that share of a whole-batch step: the work of the whole batch
            w = np.array([self._weight, self._weight, self._vweight, self._weight])
            total = np.rint(self._groups.sum(total * w)).astype(np.int64)
        return dict(zip(("primal", "adjoint", "validation", "gradient"), (int(v) for v in total)))

    def set_trace(self, on: bool) -> None:
        """Start (a new trace) or stop the event trace of the primal and adjoint cores on this rank
        (:meth:`braidnet.braid.Core.set_trace`; local, no communication).  Cores made by
        :meth:`restart` while it is on trace too.  Needs braidnet's bundled core
        (``braidnet.braid.TRACE_AVAILABLE``), else ``NotImplementedError``."""
        if not isinstance(on, (bool, np.bool_)):
            raise ValueError(f"on must be True or False, got {on!r}")
        self._check_open()
        for core in (self._primal, self._adjoint):
            core.set_trace(bool(on))
        self._tracing = bool(on)

    def traces(self) -> Dict[str, np.ndarray]:
        """This rank's events since :meth:`set_trace` ``(True)``: ``{"primal", "adjoint"}``, each a
        :attr:`braidnet.braid.Core.trace` array whose ``peer`` field is translated to ranks of this
        network's communicator (the adjoint core's communicator has the ranks reversed)."""
        self._check_open()
        out = {"primal": self._primal.trace, "adjoint": self._adjoint.trace}
        a = out["adjoint"]
        has_peer = a["peer"] >= 0
        a["peer"][has_peer] = self.size - 1 - a["peer"][has_peer]
        return out

    def restart(self) -> None:
        """Forget the MGRIT states: new cores start from the initial guess again (collective).

        After a solve diverged (``BraidError`` with code ``ERROR_DIVERGED``) the warm-start states
        hold NaN; a One-shot line search restarts here and tries a shorter step.
        """
        self._check_open()
        self._new_cores(("_primal", "_adjoint", "_validation"))
        self._u0_fresh = self._u0v_fresh = self._forward_done = False

    def _new_cores(self, names) -> None:
        """Replace the cores ``names`` (of "_primal", "_adjoint", "_validation") by new ones on the
        same apps and communicators, tracing if the old primal and adjoint cores did (collective)."""
        from braidnet.braid import Core

        T, N = self.net.T, self.n_layers
        parts = {"_primal": (self._papp, self._tcomm), "_adjoint": (self._aapp, self._acomm),
                 "_validation": (self._vapp, self._vcomm)}
        for name in names:
            old = getattr(self, name)
            if old is None:
                continue
            self._driven.discard(id(old))
            self._skip_later.discard(id(old))
            self._cold.discard(id(old))
            old.close()
            app, comm = parts[name]
            setattr(self, name, Core(app, 0.0, T, N, comm=comm, **self._core_opts))
            if self._tracing and name != "_validation":
                getattr(self, name).set_trace(True)

    def close(self) -> None:
        """Destroy the cores and free the communicators (idempotent; collective)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for core in (self._primal, self._adjoint, self._validation):
            if core is not None:
                core.close()
        for c in (self._xcomm, self._tcomm, self._vcomm, self._acomm):
            c.Free()
        self._groups.free()

    def __enter__(self) -> "ParallelNetwork":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # helpers
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this ParallelNetwork is closed")

    def _ready(self) -> None:
        self._check_open()
        if not self._theta_set:
            raise RuntimeError("call set_params() before the first solve")

    @staticmethod
    def _vector(a, n: int, name: str) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype != np.float64 or a.shape != (n,):
            raise ValueError(f"{name} must be a float64 array of shape ({n},), got {a.dtype} {a.shape}")
        return a

    def _drive_options(self, max_iter, abs_tol) -> dict:
        if max_iter is None:
            mi, tol = self._max_iter, self._abs_tol
        else:
            mi, tol = count(max_iter, "max_iter", 0), self._abs_tol
        if abs_tol is not None:
            tol = _tol(abs_tol, "abs_tol")
        return {"max_iter": mi, "abs_tol": tol}

    def _drive(self, core, opts: dict):
        if self._dtype == np.float32 and opts["abs_tol"] > 0:
            # float32 round-off leaves a residual of about eps |u| per value: a tolerance below
            # that floor would only burn iterations up to max_iter, so it is raised to it (0 asks
            # for no tolerance, exactly max_iter iterations, and stays)
            n = (self.n_layers + 1) * self.net.state_size * core.app.batch
            floor = F32_TOL_FACTOR * float(np.finfo(np.float32).eps) * math.sqrt(n)
            opts = dict(opts, abs_tol=max(opts["abs_tol"], floor))
        core.set_options(**opts)
        self._driven.add(id(core))
        try:
            return core.drive()
        finally:
            if id(core) in self._skip_later:
                self._skip_later.discard(id(core))
                core.set_options(skip="every")

    def _initial_guess(self, name: str, core, point: int, value: Optional[np.ndarray]) -> None:
        """Before a cold drive of ``core`` (collective): its store arrays, from which the core
        initialises every point, take the initial guess.  ``value`` is the core's first point
        (primal ``point`` 0 or N), held by that point's owner, which broadcasts it."""
        if id(core) not in self._cold:
            return
        self._cold.discard(id(core))
        own = [a for a in self._store_arrays()[name] if a is not None]
        if self.guess == "zero":
            for a in own:
                a.fill(0)
            return
        root = next(q for q, (lo, hi) in enumerate(self._ranges) if lo <= point <= hi)
        buf = value if self.rank == root else np.empty((self.net.state_size, core.app.batch), self._dtype)
        if self.size > 1:
            self._xcomm.Bcast(buf, root=root)
        for a in own:
            np.copyto(a, buf)

    @staticmethod
    def _rnorm(res) -> float:
        r = res.residual_norms
        return float(r[-1]) if r else -1.0

    def _own(self, s: slice) -> np.ndarray:
        """View of the global slice s (inside this rank's part) in the local parameters."""
        off = self.param_slice.start
        return self._theta[s.start - off:s.stop - off]

    def _warm_rows(self, endpoints: bool = False
                   ) -> Dict[str, Tuple[List[Tuple[int, int]], int, List[Optional[np.ndarray]]]]:
        """Per core: every rank's range of primal points, the batch, and this rank's store arrays
        in point order (None for point 0 of the primal cores and point N of the adjoint: those
        values come from the opening and the classifier, never from the core; with ``endpoints``
        the arrays that hold those values instead, for reading only)."""
        N = self.n_layers
        lo, hi = self.point_range
        alo, ahi = self.adjoint_range
        arows = [(N - h, N - l) for l, h in self._aranges]
        u0 = self._u0 if endpoints else None
        lamN = self._lamN if endpoints else None
        rows = {"primal": (self._ranges, self._papp.batch,
                           [self._state[m] if m > 0 else u0 for m in range(lo, hi + 1)]),
                "adjoint": (arows, self._aapp.batch,
                            [self._lam[p] if p < N else lamN for p in range(N - ahi, N - alo + 1)])}
        if self._validation is not None:
            p1 = max(lo, 1)
            u0v = self._u0v if endpoints else None
            rows["validation"] = (self._ranges, self._vapp.batch,
                                  [self._Uv[m - p1] if m > 0 else u0v for m in range(lo, hi + 1)])
        return rows

    def _store_arrays(self, endpoints: bool = False) -> Dict[str, List[Optional[np.ndarray]]]:
        """Per core: this rank's store arrays in point order (:meth:`_warm_rows`)."""
        return {name: own for name, (_, _, own) in self._warm_rows(endpoints).items()}

    def _gather_points(self, ranges: List[Tuple[int, int]], batch: int,
                       own: List[Optional[np.ndarray]], root: Optional[int]) -> Optional[np.ndarray]:
        """(N+1, width, batch) from every rank's points ``ranges[q]`` (None rows: zeros)."""
        width = self.net.state_size
        local = np.zeros((len(own), width, batch), self._dtype)
        for i, a in enumerate(own):
            if a is not None:
                local[i] = a
        counts = [max(h - l + 1, 0) * width * batch for l, h in ranges]
        displs = [l * width * batch if h >= l else 0 for l, h in ranges]
        full = np.empty((self.n_layers + 1, width, batch), self._dtype) if root in (None, self.rank) else None
        spec = [full, (counts, displs)] if full is not None else None
        if root is None:
            self._xcomm.Allgatherv(local, spec)
        else:
            self._xcomm.Gatherv(local, spec, root=root)
        return full

    def _root(self, root) -> None:
        if root is not None and (isinstance(root, bool) or not isinstance(root, numbers.Integral)
                                 or not 0 <= root < self.size):
            raise ValueError(f"root must be a rank in [0, {self.size}) or None, got {root!r}")

    def _piece(self, key: Key) -> np.ndarray:
        kind, i = key
        return {"W": self._layer_blocks, "U": self._state, "L": self._lam}[kind][i]

    def _sum(self, v: np.ndarray) -> np.ndarray:
        """Sum of every rank's v, in rank order (bit-identical everywhere)."""
        allv = np.empty((self.size,) + v.shape)
        self._xcomm.Allgather(np.ascontiguousarray(v, dtype=np.float64), allv)
        out = allv[0].copy()
        for q in range(1, self.size):
            out += allv[q]
        return out

    def _correct(self, theta_cls: np.ndarray, uN: np.ndarray, targets: np.ndarray) -> float:
        """How many samples of this batch the classifier gets right (summed exactly over groups)."""
        z = self.net.classifier_logits(theta_cls, uN)
        return float(np.count_nonzero(np.argmax(z, axis=0) == np.argmax(targets, axis=0)))

    def _regularizer(self, gradient: bool = True) -> Tuple[float, Optional[np.ndarray]]:
        """This rank's share of the regulariser and (``gradient``) its gradient on the local slice."""
        net, L = self.net, self.net.layout
        g = np.zeros(self._theta.shape[0]) if gradient else None
        val = 0.0
        off = self.param_slice.start
        a, b = self.layer_range
        if a < b:
            s = L.layers_slice(a, b)
            v, _ = net.regularizer_layers(self._own(s), a, b, self._layer_blocks.get(a - 1),
                                          self._layer_blocks.get(b), gradient=gradient,
                                          out=g[s.start - off:s.stop - off] if gradient else None)
            val += v
        if self.owns_opening and L.opening_size:
            v, go = net.regularizer_opening(self._own(L.opening_slice))
            val += v
            if gradient:
                g[L.opening_slice] = go
        if self.owns_classifier:
            s = L.classifier_slice
            v, gc = net.regularizer_classifier(self._own(s))
            val += v
            if gradient:
                g[s.start - off:s.stop - off] = gc
        return val, g
