"""ResNet-4: u <- u + h tanh(W u + b) through T = 4 (h = step size), u(0) = [1, -0.5, 0.25, 2].

Forward propagation of a 4-wide residual network with fixed weights, one layer per time step, solved
layer-parallel by MGRIT; initial guess zero at t > 0.

    mpiexec -n 2 python examples/resnet4.py --ntime 64 --cfactor 4 --tol 1e-10 --json
"""
import sys

from _cli import run

if __name__ == "__main__":
    sys.exit(run("resnet4", __doc__, default_ntime=64))
