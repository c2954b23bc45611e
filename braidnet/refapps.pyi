"""Type stub of the compiled module braidnet.refapps (see refapps.pyx)."""
from typing import Any

import numpy as np

from braidnet.braid import VectorApp

HEAT_NX: int
RESNET4_W: tuple[tuple[float, ...], ...]
RESNET4_B: tuple[float, ...]
RESNET4_U0: tuple[float, ...]

class _RecordingApp(VectorApp):
    def keep_states(self, npoints: int) -> None: ...
    def states(self) -> dict[int, np.ndarray]: ...
    @property
    def final(self) -> tuple[float, np.ndarray] | None: ...
    def reset_record(self) -> None: ...

class ScalarApp(_RecordingApp):
    def __init__(self, u0: float = ..., guess: float = ..., tstart: float = ...) -> None: ...

class HeatApp(_RecordingApp):
    def __init__(self, tstart: float = ...) -> None: ...

class ResNet4App(_RecordingApp):
    def __init__(self, W: Any = ..., b: Any = ..., u0: Any = ..., tstart: float = ...) -> None: ...
    def set_params(self, W: Any, b: Any) -> None: ...

class FailingScalarApp(_RecordingApp):
    def __init__(self, fail_index: int, fail_iter: int = ..., mode: str = ...) -> None: ...
