"""The I-FGSM step for one element, shared by the numba CPU and CUDA kernels.

Plain Python on float32 scalars, so numba compiles the same source for the CPU (``njit``) and as a
CUDA device function (``cuda.jit(device=True)``), and the CUDA simulator runs it as it is.  The
order of operations is the torch reference's, and every constant is float32 so nothing widens to
float64 in between (which would round differently).
"""

from __future__ import annotations

import numpy as np

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


def step_element(
    x: np.float32, g: np.float32, c: np.float32, alpha: np.float32, eps: np.float32
) -> np.float32:
    """``clamp(c + clamp((x - alpha*sign(g)) - c, -eps, eps), 0, 1)`` in float32."""
    # torch.sign: +1, -1, and +0 for +-0 and NaN.
    s = _ONE if g > _ZERO else (-_ONE if g < _ZERO else _ZERO)
    # alpha * s is exact (s is +-1 or 0), so a GPU compiler contracting it into an FMA with the
    # subtraction cannot change the result.
    d = (x - alpha * s) - c
    # Clamps as comparisons: like torch.clamp, they let a NaN through.
    if d < -eps:
        d = -eps
    elif d > eps:
        d = eps
    r = c + d
    if r < _ZERO:
        r = _ZERO
    elif r > _ONE:
        r = _ONE
    return r
