# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The fast Braid application of the layer-parallel ResNet (used by :mod:`braidnet.parallel`).

One :class:`LayerApp` is one Braid app whose vectors are one ``(width, batch)`` state block.  It
runs in one of two modes:

* **primal**: the step from ``tstart`` to ``tstop`` (any level) applies residual layer
  ``n = round(tstart / h)`` -- the step's *fine* starting index -- with step size
  ``tstop - tstart`` (re-discretisation on coarse levels): ``u <- u + dt sigma(W_n u + b_n)``;
* **adjoint** (the core runs in reversed time, adjoint point k = primal point N - k): the step
  from fine index k0 to k1 applies the transposed linearised layer ``m = N - k1`` at the stored
  primal state ``u_m``: ``lam <- lam + dt W_m^T (sigma'(W_m u_m + b_m) * lam)``.

The final access of every drive copies the fine vectors this rank keeps into their *store*
arrays; the store of a point is also its initial guess when the core initialises it (first drive
only), which is how saved warm states are loaded into a new core.

Everything the callbacks read lives in pointer tables indexed by GLOBAL fine index, filled from
Python (:meth:`LayerApp.set_layer`, :meth:`set_state`, :meth:`set_store`, :meth:`set_first`).  The
app keeps a reference to every array it points into, so a pointer stays valid until its slot is
replaced; the owner of the arrays updates them in place between drives (no table refresh needed).

**Point 0.**  The core initialises each point once, on the first drive, and a warm-restarted drive
never re-initialises.  Point 0 is never stepped into, so its vector inside the core would keep the
value of the first drive even after u_0 (dense opening) or lambda_N (classifier) changed.  Hence the
step that starts at t = 0 reads the app's *current* first vector (``set_first``) instead of the
core's, on every level (a rank that steps out of point 0 without one set reports an error); the FAS
equations stay consistent because every level does the same.  (braidnet.parallel sets no store for
point 0 either: the owner keeps u_0 / lambda_N itself.)

**Precision.**  ``dtype`` float64 (default) or float32: the state blocks, the weights the app points
at and the kernels are all of that type (the float32 network keeps a float32 copy of its weights,
:mod:`braidnet.parallel`); the core's vectors, clones, sums and messages are float32 too (half the
bytes), and the norms accumulate in float64 (:class:`braidnet.braid.VectorApp` with ``single``).
One fused-type body per callback serves both precisions.

**Layer kinds.**  The same app runs dense residual layers (``braidnet._kernels``) and
convolutional ones (``braidnet._convkernels``, issue 15; ``conv=(channels, kernel_size, H, W)``,
float64 only): the step callbacks dispatch on a kind code in the app's C data, inside the same
``nogil`` step, so everything else (pointer tables, point 0, store, step counts) is shared.  A
convolutional state block is the ``(channels, H, W, batch)`` block of ``_convkernels``, i.e. a
``(width, batch)`` block with ``width = channels * H * W``; a layer's parameter block is K
``(c, c, k, k)`` row-major then b (c entries or 1).

The step callbacks are ``noexcept nogil`` and allocate nothing: one preallocated work block.  They
count the layer steps they apply (:attr:`LayerApp.steps`): a plain counter in the app's C data, as
every rank's core runs its callbacks on one thread.
"""
from libc.math cimport lround
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memset

from braidnet.braid cimport AccessInfo, StepInfo, VectorApp, store_error_message
from braidnet._kernels cimport (bn_layer_adjoint, bn_layer_backward_ds, bn_layer_derivs,
                                bn_layer_forward, bn_layer_forward_ds, bn_layer_gradient, real)
from braidnet._convkernels cimport (BN_CONV_AUTO, bn_conv_adjoint, bn_conv_forward,
                                    bn_conv_gradient, bn_conv_work_size)

import numpy as np

from braidnet._kernels import deriv_block

__all__ = ["LayerApp"]


cdef enum:
    KIND_DENSE = 0
    KIND_CONV = 1


cdef struct LayerKind:
    # what one residual layer is: the kernels' arguments besides the blocks and the step size
    int kind               # KIND_DENSE | KIND_CONV
    int act
    int bias
    int width              # values of one sample's state (dense: channels; conv: c * H * W)
    int nb                 # bias entries per layer (channels or 1)
    Py_ssize_t wsize       # values of the weights before the bias (width^2 | c^2 k^2)
    int c, k, H, W         # conv geometry (unused for dense)


cdef struct LayerCtx:
    int adjoint            # 0: primal step, 1: adjoint step
    LayerKind lk
    int act
    int bias
    int width
    int batch
    int nb                 # bias entries per layer (width or 1)
    int nlayers            # N
    double inv_h           # N / T: t * inv_h is the fine index of time t
    size_t nbytes          # bytes of one state block: width * batch * (4 | 8)
    # every block below holds values of the app's dtype (float | double)
    const void **theta     # [N] parameter block of layer n (W row-major, then b), or NULL
    const void **states    # [N + 1] primal state at point m (adjoint mode), or NULL
    void **derivs          # [N] sigma'(W_m u_m + b_m) of a dense layer, or NULL
    unsigned char *dsvalid # [N] primal mode: derivs[m] holds sigma' at the value store[m] holds
    void **store           # [N + 1] where the final access copies the fine vector i, or NULL
    const void *first      # current value at t = 0 (u_0 or lambda_N), or NULL (zeros)
    void *work             # width * batch scratch for the kernels
    long long nsteps       # layer steps applied (any level), for the deterministic work count


cdef inline int _kind_forward(const LayerKind *lk, int batch, double h, const real *blk,
                              const real *u_in, real *u, real *work) noexcept nogil:
    """u <- u_in + h sigma(layer(u_in)) with the parameter block blk (u_in may be u)."""
    if lk.kind == KIND_CONV:
        if real is double:
            return bn_conv_forward(lk.act, lk.bias, BN_CONV_AUTO, lk.c, lk.k, lk.H, lk.W, batch, h,
                                   blk, blk + lk.wsize, u_in, u, work)
        else:
            return -1
    return bn_layer_forward(lk.act, lk.bias, lk.width, batch, h, blk, blk + lk.wsize, u_in, u, work)


cdef inline int _kind_adjoint(const LayerKind *lk, int batch, double h, const real *blk,
                              const real *um, const real *lam_in, real *lam,
                              real *work) noexcept nogil:
    """lam <- lam_in + h (dF/du(um))^T lam_in (lam_in may be lam)."""
    if lk.kind == KIND_CONV:
        if real is double:
            return bn_conv_adjoint(lk.act, lk.bias, BN_CONV_AUTO, lk.c, lk.k, lk.H, lk.W, batch, h,
                                   blk, blk + lk.wsize, um, lam_in, lam, work)
        else:
            return -1
    return bn_layer_adjoint(lk.act, lk.bias, lk.width, batch, h, blk, blk + lk.wsize, um, lam_in,
                            lam, work)


cdef inline int _kind_gradient(const LayerKind *lk, int batch, double h, const real *blk,
                               const real *u, const real *lam, real *g, real *work) noexcept nogil:
    """g += h (dF/dtheta(u))^T lam (g: the layer's block layout)."""
    if lk.kind == KIND_CONV:
        if real is double:
            return bn_conv_gradient(lk.act, lk.bias, BN_CONV_AUTO, lk.c, lk.k, lk.H, lk.W, batch, h,
                                    blk, blk + lk.wsize, u, lam, g, g + lk.wsize, work)
        else:
            return -1
    return bn_layer_gradient(lk.act, lk.bias, lk.width, batch, h, blk, blk + lk.wsize, u, lam,
                             g, g + lk.wsize, work)


cdef object _layer_kind(LayerKind *lk, int width, int batch, int act, int bias, object conv):
    """Fill lk from the Python arguments (ValueError on bad ones); returns the work size."""
    if not (0 <= act <= 2 and 0 <= bias <= 1):
        raise ValueError(f"unknown activation code {act} or bias code {bias}")
    lk.act, lk.bias, lk.width = act, bias, width
    if conv is None:
        lk.kind = KIND_DENSE
        lk.nb = width if bias == 0 else 1
        lk.wsize = <Py_ssize_t>width * width
        lk.c = lk.k = lk.H = lk.W = 0
        return width * batch
    try:
        c, k, H, W = (int(v) for v in conv)
    except (TypeError, ValueError):
        raise ValueError(f"conv must be (channels, kernel_size, H, W), got {conv!r}") from None
    if c < 1 or k < 1 or k % 2 == 0 or H < 1 or W < 1:
        raise ValueError(f"conv needs channels, H, W >= 1 and an odd kernel_size >= 1, got {conv!r}")
    if c * H * W != width:
        raise ValueError(f"conv=(channels={c}, kernel_size={k}, H={H}, W={W}) needs width = "
                         f"channels * H * W = {c * H * W}, got width={width}")
    lk.kind = KIND_CONV
    lk.c, lk.k, lk.H, lk.W = c, k, H, W
    lk.nb = c if bias == 0 else 1
    lk.wsize = <Py_ssize_t>c * c * k * k
    return max(width * batch, bn_conv_work_size(BN_CONV_AUTO, c, c, k, H, W, batch))


cdef inline int _fail(const StepInfo *info, const char *what, long k) noexcept nogil:
    """Store a RuntimeError naming the missing piece on the app and return the error code."""
    cdef char msg[200]
    snprintf(msg, sizeof(msg), "LayerApp: no %s %ld on this rank (step %.17g -> %.17g, level %d)",
             what, k, info.tstart, info.tstop, info.level)
    return store_error_message(info.app, msg)


cdef inline const void *_step_input(LayerCtx *c, const StepInfo *info, long k, void *u) noexcept nogil:
    """Where a step's input is: u itself, or the vector the core cloned u from (``info.src``: the
    step writes u from it and the clone's copy is never made).  A step out of point 0 (k = 0)
    starts from the app's current value there instead (u_0 of the opening, or lambda_N of the
    classifier): the core's point-0 vector may be stale after a warm restart (module docstring);
    NULL when the app holds no such value."""
    if k == 0:
        return c.first
    return info.src if info.src != NULL else u


cdef inline int _primal(LayerCtx *c, real *u, const StepInfo *info) noexcept nogil:
    cdef long n = lround(info.tstart * c.inv_h)
    cdef const real *W
    cdef const real *u_in
    cdef bint keep = False
    cdef int ierr
    if n < 0 or n >= c.nlayers or c.theta[n] == NULL:
        return _fail(info, "weights of layer", n)
    u_in = <const real *>_step_input(c, info, n, u)
    if u_in == NULL:
        return _fail(info, "value at point", 0)
    W = <const real *>c.theta[n]
    c.nsteps += 1
    if c.derivs[n] != NULL and info.level == 0 and info.done:
        # A fine step of the final sweep out of the value the final access keeps for point n (in a
        # final FC relaxation: every F-point) leaves sigma' there for the adjoint, at the cost of
        # one write.  Only the final sweep's: once the states have converged, the iterations'
        # steps start from those values too, and would compare and write for nothing.
        keep = c.store[n] != NULL and memcmp(u_in, c.store[n], c.nbytes) == 0
        c.dsvalid[n] = keep
    if keep:
        ierr = bn_layer_forward_ds(c.lk.act, c.lk.bias, c.lk.width, c.batch, info.tstop - info.tstart,
                                   W, W + c.lk.wsize, u_in, u, c.derivs[n], <real *>c.work)
    else:
        ierr = _kind_forward(&c.lk, c.batch, info.tstop - info.tstart, W, u_in, u, <real *>c.work)
    if ierr != 0:
        return store_error_message(info.app, b"LayerApp: bad activation or bias code")
    return 0


cdef inline int _adjoint(LayerCtx *c, real *u, const StepInfo *info) noexcept nogil:
    cdef long k0 = lround(info.tstart * c.inv_h)
    cdef long m = c.nlayers - lround(info.tstop * c.inv_h)
    cdef const real *W
    cdef const real *lam_in
    cdef int ierr
    if m < 0 or m >= c.nlayers or c.theta[m] == NULL:
        return _fail(info, "weights of layer", m)
    if c.states[m] == NULL:
        return _fail(info, "primal state at point", m)
    lam_in = <const real *>_step_input(c, info, k0, u)
    if lam_in == NULL:
        return _fail(info, "value at point", 0)
    W = <const real *>c.theta[m]
    c.nsteps += 1
    if c.derivs[m] != NULL:
        ierr = bn_layer_backward_ds(c.lk.act, c.lk.bias, c.lk.width, c.batch,
                                    info.tstop - info.tstart, W, <const real *>c.states[m],
                                    c.derivs[m], lam_in, u,
                                    <real *>NULL, <real *>NULL, <real *>c.work)
    else:
        ierr = _kind_adjoint(&c.lk, c.batch, info.tstop - info.tstart, W, <const real *>c.states[m],
                             lam_in, u, <real *>c.work)
    if ierr != 0:
        return store_error_message(info.app, b"LayerApp: bad activation or bias code")
    return 0


cdef inline int _derivs(LayerCtx *c, int m, const real *W) noexcept nogil:
    """Fill the kept sigma' of layer m (W: its weights, which give the precision)."""
    return bn_layer_derivs(c.lk.act, c.lk.bias, c.lk.width, c.batch, W, W + c.lk.wsize,
                           <const real *>c.states[m], c.derivs[m], <real *>c.work)


# The callbacks of each precision (the core hands every vector over as a double *).
cdef int _primal_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    return _primal(<LayerCtx *>ctx, u, info)


cdef int _primal_step_f32(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    return _primal(<LayerCtx *>ctx, <float *>u, info)


cdef int _adjoint_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    return _adjoint(<LayerCtx *>ctx, u, info)


cdef int _adjoint_step_f32(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    return _adjoint(<LayerCtx *>ctx, <float *>u, info)


cdef int _init(void *ctx, double t, double *u) noexcept nogil:
    # The core initialises each point once (first drive): t = 0 gets the first vector, any other
    # point what its store holds (zeros in a new app, or warm states loaded into the store).
    cdef LayerCtx *c = <LayerCtx *>ctx
    cdef long i = lround(t * c.inv_h)
    cdef const void *src = NULL
    if i == 0:
        src = c.first
    elif 0 < i <= c.nlayers:
        src = c.store[i]
    if src != NULL:
        memcpy(u, src, c.nbytes)
    else:
        memset(u, 0, c.nbytes)
    return 0


cdef int _access(void *ctx, const double *u, const AccessInfo *info) noexcept nogil:
    # Keep the converged fine vectors this rank was asked to keep (store[i] set).
    cdef LayerCtx *c = <LayerCtx *>ctx
    cdef long i
    if info.done == 0 or info.level != 0:
        return 0
    i = lround(info.t * c.inv_h)
    if 0 <= i <= c.nlayers and c.store[i] != NULL:
        if i < c.nlayers and c.dsvalid[i] and memcmp(c.store[i], u, c.nbytes) != 0:
            c.dsvalid[i] = 0            # sigma' was taken at the value this replaces
        memcpy(c.store[i], u, c.nbytes)
    return 0


cdef object _block(object a, tuple shape, str name, bint writable, dtype=np.float64):
    """a as-is if it is a C-contiguous array of this dtype and shape, else ValueError."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous \
            or a.shape != shape:
        got = (a.dtype, a.shape) if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{shape}, got {got}")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return a


cdef inline void *_ptr(object a):
    # const view: read-only arrays (e.g. views of a caller's vector) are fine; callers own writes
    cdef const unsigned char[::1] v = a.reshape(-1).view(np.uint8)
    return <void *>&v[0]


cdef class LayerApp(VectorApp):
    """Braid app of the residual layers of one network on one batch (see the module text).

    Args:
        n_layers: N (the core's ntime).
        T: final time (the core runs on [0, T]); h = T / N.
        width, batch: the state block is (width, batch).
        act, bias: ``braidnet._kernels`` activation and bias codes.
        adjoint: False for the primal step, True for the adjoint step.
        dtype: float64 (default) or float32: the precision of the states, the weights the app
            points at, and the core's vectors and messages.
        conv: None (dense layers) or ``(channels, kernel_size, H, W)``: convolutional layers
            (module text; float64 only, width = channels * H * W).
    """
    cdef LayerCtx c
    cdef readonly int n_layers
    cdef readonly int width
    cdef readonly int batch
    cdef readonly bint adjoint
    cdef readonly Py_ssize_t layer_size
    cdef readonly double h
    cdef list _theta_refs, _state_refs, _store_refs, _deriv_refs
    cdef object _first_ref, _work, _dtype, _gsingle

    def __cinit__(self, int n_layers, double T, int width, int batch, int act, int bias,
                  bint adjoint=False, dtype=np.float64, conv=None):
        if n_layers < 1 or width < 1 or batch < 1 or not T > 0.0:
            raise ValueError(f"LayerApp needs n_layers, width, batch >= 1 and T > 0, got "
                             f"n_layers={n_layers}, width={width}, batch={batch}, T={T}")
        nwork = _layer_kind(&self.c.lk, width, batch, act, bias, conv)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"LayerApp dtype must be float64 or float32, got {dtype!r}")
        if conv is not None and dt != np.float64:
            raise ValueError("convolutional layers (conv=...) are float64 only")
        self._dtype = dt
        self.single = dt == np.float32
        self.n_layers, self.width, self.batch, self.adjoint = n_layers, width, batch, adjoint
        self.c.adjoint, self.c.act, self.c.bias = adjoint, act, bias
        self.c.width, self.c.batch, self.c.nlayers = width, batch, n_layers
        self.c.nb = self.c.lk.nb
        self.layer_size = self.c.lk.wsize + self.c.lk.nb
        self.c.inv_h = n_layers / T
        self.h = T / n_layers              # the fine step, as the network computes it
        self.c.nbytes = <size_t>width * batch * dt.itemsize
        self.c.theta = <const void **>calloc(n_layers, sizeof(void *))
        self.c.states = <const void **>calloc(n_layers + 1, sizeof(void *))
        self.c.store = <void **>calloc(n_layers + 1, sizeof(void *))
        self.c.derivs = <void **>calloc(n_layers, sizeof(void *))
        self.c.dsvalid = <unsigned char *>calloc(n_layers, 1)
        if self.c.theta == NULL or self.c.states == NULL or self.c.store == NULL \
                or self.c.derivs == NULL or self.c.dsvalid == NULL:
            raise MemoryError()
        self._theta_refs = [None] * n_layers
        self._deriv_refs = [None] * n_layers
        self._state_refs = [None] * (n_layers + 1)
        self._store_refs = [None] * (n_layers + 1)
        self._work = np.zeros(nwork, dt)
        self._gsingle = np.zeros(self.layer_size, np.float32) if self.single else None
        self.c.work = _ptr(self._work)
        self.size = width * batch
        self.ctx = &self.c
        if self.single:
            self.step_fn = _adjoint_step_f32 if adjoint else _primal_step_f32
        else:
            self.step_fn = _adjoint_step if adjoint else _primal_step
        self.init_fn = _init
        self.access_fn = _access
        self.steps_from_src = 1     # a clone stepped at once is written by the step, not copied

    def __dealloc__(self):
        free(self.c.theta)
        free(self.c.states)
        free(self.c.store)
        free(self.c.derivs)
        free(self.c.dsvalid)

    @property
    def steps(self) -> int:
        """Layer steps this app has applied since it was made (every level, every drive)."""
        return self.c.nsteps

    def reset_steps(self) -> None:
        """Set the step counter back to 0."""
        self.c.nsteps = 0

    def _index(self, i, int hi, str what) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= hi:
            raise ValueError(f"{what} index must be an integer in [0, {hi}], got {i!r}")
        return int(i)

    def set_layer(self, n, block) -> None:
        """Point layer n's weights at ``block`` (layer_size values of the app's dtype: W row-major
        then b); None clears."""
        cdef int k = self._index(n, self.n_layers - 1, "layer")
        if block is None:
            self.c.theta[k] = NULL
        else:
            _block(block, (self.layer_size,), f"the parameters of layer {k}", False, self._dtype)
            self.c.theta[k] = _ptr(block)
        self._theta_refs[k] = block

    def set_state(self, m, u) -> None:
        """Point the primal state of point m (read by the adjoint step) at ``u``; None clears."""
        cdef int k = self._index(m, self.n_layers, "point")
        if u is None:
            self.c.states[k] = NULL
        else:
            _block(u, (self.width, self.batch), f"the primal state at point {k}", False, self._dtype)
            self.c.states[k] = _ptr(u)
        self._state_refs[k] = u

    def set_deriv(self, m, ds) -> None:
        """Keep sigma'(W_m u_m + b_m) of dense layer m in ``ds`` (None clears): an array of the
        shape and dtype ``braidnet._kernels.deriv_block(act, width, batch, dtype)`` gives (values,
        or bits for ReLU on the BLAS path).

        Adjoint mode: every adjoint step through layer m, on every level and in every iteration,
        linearises at the same primal state u_m, so with ``ds`` kept (filled by
        :meth:`update_derivs`) a step is one GEMM, W_m^T (ds * lam), instead of two and an
        activation pass; the results are the same bit for bit.  Worth it where the serial kernels
        keep sigma' too (``braidnet._kernels.keeps_derivs``).

        Primal mode (the same arrays): a fine step of the final sweep (done = 1) out of point m
        whose start is exactly what the store of m holds writes sigma' into ``ds`` as it goes; a
        final FC relaxation does that for every F-point, and :attr:`derivs_valid` tells which layers
        need no :meth:`update_derivs`.
        """
        cdef int k = self._index(m, self.n_layers - 1, "layer")
        if ds is None:
            self.c.derivs[k] = NULL
        else:
            if self.c.lk.kind != KIND_DENSE:
                raise ValueError("set_deriv: only dense layers keep sigma'")
            shape, dt = deriv_block(self.c.lk.act, self.width, self.batch, self._dtype)
            _block(ds, shape, f"the derivative of layer {k}", True, dt)
            self.c.derivs[k] = _ptr(ds)
        self.c.dsvalid[k] = 0
        self._deriv_refs[k] = ds

    @property
    def derivs_valid(self):
        """Primal mode: uint8 flags per layer, 1 where the kept sigma' is that of the current
        weights at the value the store of the point holds (a copy)."""
        return np.array(<unsigned char[:self.n_layers]>self.c.dsvalid, dtype=np.uint8)

    def reset_derivs(self) -> None:
        """Forget which kept sigma' are current (call it when the weights change)."""
        memset(self.c.dsvalid, 0, self.n_layers)

    def update_derivs(self, skip=None) -> None:
        """Fill every kept derivative (:meth:`set_deriv`) from the current weights and primal
        states, except the layers where ``skip`` (a primal app's :attr:`derivs_valid`) is 1:
        call it after they change and before the next adjoint drive (a stale one gives a wrong
        adjoint silently)."""
        cdef int m, ierr = 0
        cdef const unsigned char[::1] sk = np.zeros(self.n_layers, np.uint8) if skip is None \
            else np.ascontiguousarray(skip, dtype=np.uint8)
        if sk.shape[0] != self.n_layers:
            raise ValueError(f"skip must have {self.n_layers} flags, got {sk.shape[0]}")
        for m in range(self.n_layers):
            if self.c.derivs[m] != NULL and (self.c.theta[m] == NULL or self.c.states[m] == NULL):
                raise RuntimeError(f"update_derivs: layer {m} keeps sigma' but has no "
                                   f"{'weights' if self.c.theta[m] == NULL else 'primal state'}")
        with nogil:
            for m in range(self.n_layers):
                if self.c.derivs[m] == NULL or sk[m]:
                    continue
                if self.single:
                    ierr |= _derivs(&self.c, m, <const float *>self.c.theta[m])
                else:
                    ierr |= _derivs(&self.c, m, <const double *>self.c.theta[m])
        if ierr != 0:
            raise ValueError("update_derivs: bad activation or bias code")

    def add_gradient(self, n, lam, grad_block) -> None:
        """``grad_block += h (dF/dtheta(u_n))^T lam`` for layer n, from the app's weights, primal
        state and kept sigma' of layer n (without allocating anything).

        ``lam`` = lambda_{n+1}, a (width, batch) block of the app's dtype; ``grad_block`` is float64
        (a float32 layer's gradient is computed in float32, then added).
        """
        cdef int k = self._index(n, self.n_layers - 1, "layer")
        if self.c.theta[k] == NULL or self.c.states[k] == NULL:
            raise RuntimeError(f"add_gradient: layer {k} has no "
                               f"{'weights' if self.c.theta[k] == NULL else 'primal state'}")
        _block(lam, (self.width, self.batch), "lam", False, self._dtype)
        _block(grad_block, (self.layer_size,), "grad_block", True)
        g = grad_block
        if self.single:
            g = self._gsingle
            g.fill(0)
        cdef int ierr = _gradient_call(&self.c.lk, self.batch, self.h, self.single,
                                       <void *>self.c.theta[k], <void *>self.c.states[k],
                                       self.c.derivs[k], _ptr(lam), _ptr(g), self.c.work)
        if ierr != 0:
            raise ValueError("add_gradient: bad activation or bias code")
        if self.single:
            grad_block += g

    def set_store(self, i, u) -> None:
        """The final access (done = 1, level 0) copies the vector at fine point i into ``u``.

        ``u`` is also the initial guess of point i >= 1 on the first drive (warm states).
        """
        cdef int k = self._index(i, self.n_layers, "point")
        if u is None:
            self.c.store[k] = NULL
        else:
            _block(u, (self.width, self.batch), f"the store of point {k}", True, self._dtype)
            self.c.store[k] = _ptr(u)
        self._store_refs[k] = u

    def set_first(self, u) -> None:
        """The current value at t = 0 (u_0 or lambda_N), read by init and by every step from 0."""
        if u is None:
            self.c.first = NULL
        else:
            _block(u, (self.width, self.batch), "the first vector", False, self._dtype)
            self.c.first = _ptr(u)
        self._first_ref = u


cdef int _gradient_call(const LayerKind *lk, int batch, double h, bint single, void *W, void *u,
                        void *ds, void *lam, void *g, void *work) noexcept:
    """g += h (dF/dtheta(u))^T lam for one layer, with the kept sigma' ds when not NULL."""
    cdef int ierr
    with nogil:
        if ds != NULL and single:
            ierr = bn_layer_backward_ds(lk.act, lk.bias, lk.width, batch, h, <float *>W,
                                        <float *>u, ds, <float *>lam, NULL, <float *>g,
                                        <float *>g + lk.wsize, <float *>work)
        elif ds != NULL:
            ierr = bn_layer_backward_ds(lk.act, lk.bias, lk.width, batch, h, <double *>W,
                                        <double *>u, ds, <double *>lam, NULL, <double *>g,
                                        <double *>g + lk.wsize, <double *>work)
        elif single:
            ierr = _kind_gradient(lk, batch, h, <float *>W, <float *>u, <float *>lam,
                                  <float *>g, <float *>work)
        else:
            ierr = _kind_gradient(lk, batch, h, <double *>W, <double *>u, <double *>lam,
                                  <double *>g, <double *>work)
    return ierr
