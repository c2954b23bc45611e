"""Scalar ODE u' = -u by backward Euler on [0, ntime/2] (dt = 0.5), u(0) = 1, guess 0.456 elsewhere.

    mpiexec -n 2 python examples/scalar_ode.py --ntime 64 --cfactor 4 --tol 1e-10 --json
"""
import sys

from _cli import run

if __name__ == "__main__":
    sys.exit(run("scalar", __doc__, default_ntime=64))
