"""Type stub of the compiled per-layer ResNet kernels (state blocks are (width, batch))."""
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[Union[np.float64, np.float32]]   # float64 or float32: every array of a call alike
Activation = Union[str, int]

TANH: int
RELU: int
SMOOTHRELU: int
BIAS_CHANNEL: int
BIAS_SCALAR: int
ACTIVATIONS: Dict[str, int]
FUSED_MAX_WIDTH: int
DTYPES: Tuple[np.dtype, np.dtype]

def layer_forward(W: F64, b: F64, u_in: F64, h: float, activation: Activation,
                  u_out: Optional[F64] = ..., work: Optional[F64] = ...) -> F64: ...
def layer_backward(W: F64, b: F64, u: F64, lam_in: F64, h: float, activation: Activation,
                   lam_out: Optional[F64] = ..., gW: Optional[F64] = ..., gb: Optional[F64] = ...,
                   work: Optional[F64] = ...) -> F64: ...
def opening_forward(W: F64, b: F64, x: F64, activation: Activation,
                    u_out: Optional[F64] = ...) -> F64: ...
def opening_gradient(W: F64, b: F64, x: F64, lam0: F64, activation: Activation, gW: F64, gb: F64,
                     work: Optional[F64] = ...) -> None: ...
def keeps_derivs(width: int, dtype: Any) -> bool: ...
def deriv_block(activation: Activation, width: int, batch: int,
                dtype: Any) -> Tuple[Tuple[int, int], np.dtype]: ...
def net_forward(theta_layers: F64, width: int, nb_bias: int, n_layers: int, h: float,
                activation: Activation, states: F64, work: Optional[F64] = ...,
                derivs: Optional[NDArray[Any]] = ...) -> F64: ...
def net_backward(theta_layers: F64, width: int, nb_bias: int, n_layers: int, h: float,
                 activation: Activation, states: F64, lam: F64, grad_layers: F64,
                 work: Optional[F64] = ..., derivs: Optional[NDArray[Any]] = ...) -> F64: ...
def tanh(x: F64, out: Optional[F64] = ...) -> F64: ...
