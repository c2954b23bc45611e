"""Heat equation u_t = u_xx + F on 33 points of [0, pi], t in [0, 2 pi], exact solution sin(x) cos(t).

Backward Euler (F at the end of each step), Dirichlet values from the exact solution, a tridiagonal
solve per step; initial guess zero at t > 0.

    mpiexec -n 2 python examples/heat.py --ntime 128 --cfactor 4 --max-levels 3 --tol 1e-10 --json
"""
import sys

from _cli import run

if __name__ == "__main__":
    sys.exit(run("heat", __doc__, default_ntime=128))
