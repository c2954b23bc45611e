"""Type stub of the compiled layer-parallel Braid app (see braidnet/_layerapp.pyx)."""
from typing import Optional, Tuple

import numpy as np
from numpy.typing import NDArray

from braidnet.braid import VectorApp

F64 = NDArray[np.float64]
Real = NDArray  # float64 or float32: the app's dtype

class LayerApp(VectorApp):
    n_layers: int
    width: int
    batch: int
    adjoint: bool
    layer_size: int
    @property
    def steps(self) -> int: ...
    def reset_steps(self) -> None: ...
    def __init__(self, n_layers: int, T: float, width: int, batch: int, act: int, bias: int,
                 adjoint: bool = ..., dtype: object = ...,
                 conv: Optional[Tuple[int, int, int, int]] = ...) -> None: ...
    def set_layer(self, n: int, block: Optional[Real]) -> None: ...
    def set_state(self, m: int, u: Optional[Real]) -> None: ...
    def set_store(self, i: int, u: Optional[Real]) -> None: ...
    def set_first(self, u: Optional[Real]) -> None: ...

def layer_gradient(act: int, bias: int, h: float, block: Real, u: Real, lam: Real, grad_block: F64,
                   conv: Optional[Tuple[int, int, int, int]] = ...) -> None: ...
