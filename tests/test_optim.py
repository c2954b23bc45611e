"""Optimisers: convergence, line search bookkeeping, distributed reductions, checkpoints."""
import io
import threading

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from braidnet import optim


def rosenbrock(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    d = x[1:] - x[:-1] ** 2
    g[:-1] = -400.0 * x[:-1] * d - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * d
    return g


def quadratic(n=12, seed=0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = Q @ np.diag(np.geomspace(1.0, 50.0, n)) @ Q.T   # condition number 50
    c = rng.standard_normal(n)
    xstar = np.linalg.solve(A, c)
    return (lambda x: float(0.5 * x @ A @ x - c @ x)), (lambda x: A @ x - c), xstar


@pytest.mark.parametrize("opt,iters", [(optim.LBFGS(memory=8), 200), (optim.BFGS(), 200)])
def test_quasi_newton_solves_rosenbrock(opt, iters):
    x0 = np.array([-1.2, 1.0, -0.5, 0.8])
    res = optim.minimize(opt, rosenbrock, rosenbrock_grad, x0, max_iter=iters, gtol=1e-8)
    assert res.converged, res.message
    assert_allclose(res.x, np.ones(4), rtol=0, atol=1e-6)
    rows = res.history[1:]
    assert all(r["step"] > 0 and r["ls_trials"] >= 1 for r in rows)
    assert all(b["objective"] <= a["objective"] for a, b in zip(res.history, rows))


def test_steepest_descent_and_lbfgs_on_quadratic():
    f, g, xstar = quadratic()
    x0 = np.zeros_like(xstar)
    sd = optim.minimize(optim.SteepestDescent(), f, g, x0, max_iter=5000, gtol=1e-6)
    lb = optim.minimize(optim.LBFGS(memory=5), f, g, x0, max_iter=200, gtol=1e-6)
    assert sd.converged and lb.converged
    assert_allclose(sd.x, xstar, rtol=0, atol=1e-6)
    assert_allclose(lb.x, xstar, rtol=0, atol=1e-6)
    assert lb.n_iter < sd.n_iter


def test_two_loop_recursion_equals_dense_update():
    """L-BFGS direction = -H g with H built densely from H0 = (s'y/y'y of the newest pair) I."""
    rng = np.random.default_rng(0)
    n = 6
    A = np.diag(np.arange(1.0, n + 1))
    lb = optim.LBFGS(memory=10)
    pairs = []
    for _ in range(4):
        s = rng.standard_normal(n)
        pairs.append((s, A @ s))
        lb.update(*pairs[-1])
    s, y = pairs[-1]
    H = np.eye(n) * (s @ y) / (y @ y)
    eye = np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        H = (eye - rho * np.outer(s, y)) @ H @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    g = rng.standard_normal(n)
    assert_allclose(lb.direction(g), -H @ g, rtol=1e-12, atol=1e-14)


def test_armijo_backtracking_counts_trials():
    calls = []

    def fun(x):
        calls.append(x.copy())
        return float(x @ x)

    x = np.array([1.0])
    # p = -4 g overshoots: steps 1 (f=9), 0.5 (f=1, not < 1 - ...), 0.25 (f=0) -> accepted on trial 3
    x_new, f_new, a, trials, ok = optim.armijo(fun, x, 1.0, gp=-8.0, p=np.array([-4.0]))
    assert ok and trials == 3 and len(calls) == 3 and a == 0.25
    assert_allclose(x_new, [0.0], rtol=0, atol=0)
    # never satisfiable: fails after max_trials evaluations and returns the old point
    calls.clear()
    x_new, f_new, a, trials, ok = optim.armijo(fun, x, 1.0, gp=-8.0, p=np.array([4.0]), max_trials=6)
    assert not ok and trials == 6 and len(calls) == 6 and a == 0.0 and x_new is x


def test_failed_line_search_resets_memory_and_stops():
    opt = optim.LBFGS(ls_max_trials=3)
    # a "function" whose values increase along every direction (not consistent with its gradient)
    res = optim.minimize(opt, lambda x: float(np.sum(x ** 2)) + 1e3 * np.any(x != 1.0),
                         lambda x: np.ones_like(x), np.ones(3), max_iter=10)
    assert res.message == "line search failed" and res.n_iter == 2
    assert all(r["step"] == 0.0 and r["ls_trials"] == 3 for r in res.history[1:])


class FakeAllreduce:
    """Sum-allreduce among P threads (stands in for MPI over ranks)."""

    def __init__(self, P):
        self.P = P
        self.barrier = threading.Barrier(P, timeout=20)
        self.buf = np.zeros(P)

    def sum(self, rank, value):
        self.barrier.wait()
        self.buf[rank] = value
        self.barrier.wait()
        total = float(np.sum(self.buf))  # same order on every rank -> identical decisions
        self.barrier.wait()
        return total


@pytest.mark.parametrize("cls", [optim.LBFGS, optim.SteepestDescent])
def test_distributed_slices_match_serial(cls):
    """Each 'rank' holds only its slice of x, g, s, y; dot reduces over ranks."""
    n, P = 10, 3
    x0 = np.linspace(-1.5, 1.2, n)
    serial = optim.minimize(cls(), rosenbrock, rosenbrock_grad, x0, max_iter=40, gtol=0.0)
    cuts = [0, 3, 7, 10]
    comm = FakeAllreduce(P)
    shared_x = np.zeros(n)
    results = [None] * P
    errors = []

    def run(rank):
        try:
            sl = slice(cuts[rank], cuts[rank + 1])

            def gather(xl):
                comm.barrier.wait()
                shared_x[sl] = xl
                comm.barrier.wait()
                return shared_x.copy()

            fun = lambda xl: rosenbrock(gather(xl))                 # noqa: E731
            grad = lambda xl: rosenbrock_grad(gather(xl))[sl]       # noqa: E731
            dot = lambda a, b: comm.sum(rank, float(np.dot(a, b)))  # noqa: E731
            results[rank] = optim.minimize(cls(dot=dot), fun, grad, x0[sl], max_iter=40, gtol=0.0)
        except Exception as e:  # pragma: no cover - surfaces thread failures
            errors.append(e)
            comm.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(P)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    x = np.concatenate([r.x for r in results])
    assert_allclose(x, serial.x, rtol=1e-9, atol=1e-12)
    for r in results:
        assert [h["ls_trials"] for h in r.history] == [h["ls_trials"] for h in serial.history]
        assert_allclose([h["gnorm"] for h in r.history], [h["gnorm"] for h in serial.history],
                        rtol=1e-9, atol=0)


@pytest.mark.parametrize("make", [lambda: optim.LBFGS(memory=4), optim.BFGS, optim.SteepestDescent])
def test_line_search_state_roundtrip(make):
    x0 = np.array([-1.2, 1.0, 0.3])
    f, g = rosenbrock, rosenbrock_grad
    a = make()
    x, fx, gx = x0, f(x0), g(x0)
    for _ in range(6):
        x, fx, gx, _ = a.step(f, g, x, fx, gx)
    state = a.state_dict()
    for v in state.values():
        assert isinstance(v, (int, float, str, np.ndarray))
    b = make()
    b.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()})
    xa, xb = x, x.copy()
    fa, fb, ga, gb = fx, fx, gx, gx.copy()
    for _ in range(6):
        xa, fa, ga, ia = a.step(f, g, xa, fa, ga)
        xb, fb, gb, ib = b.step(f, g, xb, fb, gb)
        assert ia == ib
    assert_allclose(xa, xb, rtol=0, atol=0)
    with pytest.raises(ValueError, match="kind="):
        optim.SGD().load_state_dict(state)


def test_sgd_and_adam_least_squares():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 5))
    xs = rng.standard_normal(5)
    bvec = A @ xs

    def batch(x, idx):
        r = A[idx] @ x - bvec[idx]
        return float(0.5 * r @ r / idx.size), A[idx].T @ r / idx.size

    for opt, epochs in ((optim.SGD(lr=0.1, momentum=0.5), 60), (optim.Adam(lr=0.05), 150)):
        res = optim.minimize_stochastic(opt, batch, np.zeros(5), 200, 20, epochs, seed=1)
        assert len(res.history) == epochs and res.history[-1]["objective"] < 1e-3
        assert_allclose(res.x, xs, rtol=0, atol=0.05)
        # same seed, same run
        opt2 = type(opt)(**{k: getattr(opt, k) for k in ("lr",)})
        if isinstance(opt, optim.SGD):
            opt2.momentum = opt.momentum
        res2 = optim.minimize_stochastic(opt2, batch, np.zeros(5), 200, 20, epochs, seed=1)
        assert_allclose(res2.x, res.x, rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda: optim.SGD(lr=0.1, momentum=0.9), optim.Adam])
def test_stochastic_state_roundtrip(make):
    g = lambda x: 2.0 * x - 1.0   # noqa: E731
    a = make()
    x = np.arange(4.0)
    for _ in range(3):
        x = a.step(x, g(x))
    b = make()
    b.load_state_dict(a.state_dict())
    xa, xb = x, x.copy()
    for _ in range(3):
        xa, xb = a.step(xa, g(xa)), b.step(xb, g(xb))
    assert_allclose(xa, xb, rtol=0, atol=0)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="memory=0"):
        optim.LBFGS(memory=0)
    with pytest.raises(ValueError, match="ls_factor=1.5"):
        optim.LBFGS(ls_factor=1.5)
    with pytest.raises(ValueError, match="c1=0"):
        optim.BFGS(c1=0)
    with pytest.raises(ValueError, match="lr=-1"):
        optim.Adam(lr=-1)
    with pytest.raises(ValueError, match="momentum=1.0"):
        optim.SGD(momentum=1.0)
    with pytest.raises(ValueError, match="max_iter=0"):
        optim.minimize(optim.LBFGS(), rosenbrock, rosenbrock_grad, np.zeros(2), max_iter=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        optim.minimize_stochastic(optim.SGD(), lambda x, i: (0.0, x), np.zeros(2), 10, 0, 1)


# ---- learning-rate schedules, SGD/Adam against hand-written updates -------------------------

SCHEDULES = {
    "constant": dict(lr=0.05, kind="constant"),
    "step": dict(lr=0.05, kind="step", step_size=2, gamma=0.5, steps_per_epoch=2),
    "cosine": dict(lr=0.05, kind="cosine", total=3, lr_min=0.01, steps_per_epoch=2),
    "cosine_warmup": dict(lr=0.05, kind="cosine", total=4, warmup=3),
}


def reference_rate(spec, t):
    """The schedule written out independently: epoch first, then the kind's formula, warm-up."""
    spe = spec.get("steps_per_epoch", 1)
    epoch = t // spe
    lr = spec["lr"]
    if spec["kind"] == "step":
        for _ in range(epoch // spec["step_size"]):
            lr *= spec["gamma"]
    elif spec["kind"] == "cosine":
        lo, T = spec.get("lr_min", 0.0), spec["total"]
        frac = min(epoch, T) / T
        lr = lo + 0.5 * (lr - lo) * (1.0 + np.cos(np.pi * frac))
    w = spec.get("warmup", 0)
    return lr * (t + 1) / w if t < w else lr


def quadratic_grad():
    A = np.diag([1.0, 4.0, 0.5])
    c = np.array([1.0, -2.0, 0.5])
    return lambda x: A @ x - c


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_reference(name):
    spec = SCHEDULES[name]
    sched = optim.LearningRate(**spec)
    for t in range(20):
        assert_allclose(sched(t), reference_rate(spec, t), rtol=1e-15, atol=0)


def test_schedule_values_by_hand():
    cos = optim.LearningRate(0.1, "cosine", total=10, lr_min=0.02)
    assert cos(0) == 0.1
    assert_allclose(cos(5), 0.06, rtol=1e-15)          # T/2: halfway between lr and lr_min
    assert_allclose(cos(10), 0.02, rtol=1e-15)         # T: lr_min
    assert cos(25) == 0.02                             # stays at the floor after T
    # per-epoch units: 3 steps per epoch, total 10 epochs -> T/2 is step 15..17
    cos_e = optim.LearningRate(0.1, "cosine", total=10, lr_min=0.02, steps_per_epoch=3)
    assert cos_e(14) == cos(4) and cos_e(15) == cos(5) and cos_e(17) == cos(5) and cos_e(18) == cos(6)
    step = optim.LearningRate(0.1, "step", step_size=3, gamma=0.5)
    assert [step(t) for t in (0, 2, 3, 5, 6)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    step_e = optim.LearningRate(0.1, "step", step_size=3, steps_per_epoch=4)   # default gamma 0.1
    assert step_e(11) == 0.1 and step_e(12) == 0.1 * 0.1 and step_e(23) == 0.1 * 0.1
    assert_allclose(step_e(24), 0.1 * 0.1 * 0.1, rtol=1e-15)
    warm = optim.LearningRate(0.2, warmup=4)
    assert [warm(t) for t in range(6)] == [0.05, 0.1, 0.15000000000000002, 0.2, 0.2, 0.2]


def reference_sgd(x, grad, rates, mu, nesterov):
    x = x.copy()
    buf = None
    for lr in rates:
        g = grad(x)
        if mu == 0.0:
            x = x - lr * g
            continue
        buf = g.copy() if buf is None else mu * buf + g
        x = x - lr * (g + mu * buf if nesterov else buf)
    return x


def reference_adam(x, grad, rates, b1, b2, eps):
    x = x.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for k, lr in enumerate(rates, start=1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        x = x - lr * (m / (1 - b1 ** k)) / (np.sqrt(v / (1 - b2 ** k)) + eps)
    return x


OPTIMISERS = {
    "sgd": (dict(), lambda x, g, r: reference_sgd(x, g, r, 0.0, False)),
    "momentum": (dict(momentum=0.8), lambda x, g, r: reference_sgd(x, g, r, 0.8, False)),
    "nesterov": (dict(momentum=0.7, nesterov=True), lambda x, g, r: reference_sgd(x, g, r, 0.7, True)),
    "adam": (dict(beta1=0.85, beta2=0.99, eps=1e-6),
             lambda x, g, r: reference_adam(x, g, r, 0.85, 0.99, 1e-6)),
}


@pytest.mark.parametrize("sched", list(SCHEDULES))
@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_stochastic_step_equals_reference(name, sched):
    kwargs, reference = OPTIMISERS[name]
    cls = optim.Adam if name == "adam" else optim.SGD
    opt = cls(lr=optim.LearningRate(**SCHEDULES[sched]), **kwargs)
    grad = quadratic_grad()
    x0 = np.array([0.3, -0.2, 1.0])
    n = 9
    x = x0.copy()
    for _ in range(n):
        x_new = opt.step(x, grad(x))
        assert not np.shares_memory(x_new, x)
        x = x_new
    assert opt.n_iter == n
    rates = [reference_rate(SCHEDULES[sched], t) for t in range(n)]
    assert_allclose(x, reference(x0, grad, rates), rtol=1e-13, atol=1e-15)
    assert opt.lr == optim.LearningRate(**SCHEDULES[sched])(n)


def test_float_lr_is_constant_schedule():
    opt = optim.SGD(lr=0.25)
    assert opt.schedule.kind == "constant" and opt.lr == 0.25
    x = opt.step(np.array([1.0, 2.0]), np.array([4.0, -4.0]))
    assert_array_equal(x, [0.0, 3.0])


def npz_roundtrip(state):
    """What a checkpoint file gives back: every entry a numpy array."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=optim.LearningRate(0.05, "cosine", total=5, lr_min=0.001, warmup=2),
                      momentum=0.9, nesterov=True),
    lambda: optim.SGD(lr=optim.LearningRate(0.05, "step", step_size=2, steps_per_epoch=3)),
    lambda: optim.Adam(lr=optim.LearningRate(0.05, "step", step_size=1, gamma=0.7)),
])
@pytest.mark.parametrize("via_file", [False, True])
def test_resume_mid_run_is_bit_for_bit(make, via_file):
    grad = quadratic_grad()
    x0 = np.array([0.3, -0.2, 1.0])
    a = make()
    x = x0.copy()
    for _ in range(12):
        x = a.step(x, grad(x))
    b = make()
    y = x0.copy()
    for _ in range(5):
        y = b.step(y, grad(y))
    state = b.state_dict()
    for v in state.values():
        assert isinstance(v, (int, float, str, np.ndarray))
    c = make()
    c.load_state_dict(npz_roundtrip(state) if via_file else state)
    assert c.n_iter == 5 and c.lr == b.lr
    for _ in range(7):
        y = c.step(y, grad(y))
    assert_array_equal(y, x)


def test_load_state_refuses_other_kind_or_schedule():
    sgd = optim.SGD(lr=optim.LearningRate(0.1, "cosine", total=10), momentum=0.9)
    sgd.step(np.ones(2), np.ones(2))
    state = sgd.state_dict()
    with pytest.raises(ValueError, match="kind='sgd', not 'adam'"):
        optim.Adam().load_state_dict(state)
    with pytest.raises(ValueError, match="lr_kind='cosine'.*lr_kind='step'"):
        optim.SGD(lr=optim.LearningRate(0.1, "step", step_size=3), momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="lr_total=10.*lr_total=20"):
        optim.SGD(lr=optim.LearningRate(0.1, "cosine", total=20), momentum=0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="momentum=0.9.*momentum=0.5"):
        optim.SGD(lr=optim.LearningRate(0.1, "cosine", total=10), momentum=0.5).load_state_dict(state)
    adam = optim.Adam(beta2=0.99)
    with pytest.raises(ValueError, match="beta2=0.99.*beta2=0.999"):
        optim.Adam().load_state_dict(adam.state_dict())
    # nothing was changed by the refused loads
    fresh = optim.SGD(lr=optim.LearningRate(0.1, "step", step_size=3), momentum=0.9)
    with pytest.raises(ValueError):
        fresh.load_state_dict(state)
    assert fresh.n_iter == 0 and fresh.velocity is None


@pytest.mark.parametrize("call,match", [
    (lambda: optim.LearningRate(0.0), "lr=0.0"),
    (lambda: optim.LearningRate(float("nan")), "lr=nan"),
    (lambda: optim.LearningRate(0.1, "linear"), "kind='linear'"),
    (lambda: optim.LearningRate(0.1, "step"), "step_size=None"),
    (lambda: optim.LearningRate(0.1, "step", step_size=0), "step_size=0"),
    (lambda: optim.LearningRate(0.1, "step", step_size=2, gamma=-0.5), "gamma=-0.5"),
    (lambda: optim.LearningRate(0.1, "cosine"), "total=None"),
    (lambda: optim.LearningRate(0.1, "cosine", total=1.5), "total=1.5"),
    (lambda: optim.LearningRate(0.1, "cosine", total=5, lr_min=0.1), "lr_min=0.1"),
    (lambda: optim.LearningRate(0.1, "cosine", total=5, lr_min=-1.0), "lr_min=-1.0"),
    (lambda: optim.LearningRate(0.1, "constant", total=5), "total=5 with kind='constant'"),
    (lambda: optim.LearningRate(0.1, "cosine", total=5, gamma=0.5), "gamma=0.5 with kind='cosine'"),
    (lambda: optim.LearningRate(0.1, warmup=-1), "warmup=-1"),
    (lambda: optim.LearningRate(0.1, steps_per_epoch=0), "steps_per_epoch=0"),
    (lambda: optim.LearningRate(0.1)(-1), "t=-1"),
    (lambda: optim.SGD(lr=-0.1), "lr=-0.1"),
    (lambda: optim.SGD(momentum=-0.1), "momentum=-0.1"),
    (lambda: optim.SGD(nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: optim.SGD(momentum=0.5, nesterov="no"), "nesterov='no'"),
    (lambda: optim.Adam(beta1=1.0), "beta1=1.0"),
    (lambda: optim.Adam(beta2=-0.1), "beta2=-0.1"),
    (lambda: optim.Adam(eps=0.0), "eps=0.0"),
])
def test_bad_schedule_and_stochastic_arguments(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
