"""``cpu-fused``: the I-FGSM step as one numba loop over the flat arrays.

One pass reads x, grad and centre once and writes out once; the torch reference makes six
full-size temporaries, and faulting in their fresh pages costs more than its arithmetic.  With a
preallocated ``out`` nothing is allocated at all.  The loop is single-threaded on purpose: it is
memory-bound, so ``parallel=True`` gained nothing at 12 MP, and on a loaded 2-core machine its
median at 0.25 MP was often 20x worse (waiting for the second thread to be scheduled).
``fastmath`` stays off: it would allow reassociation and break bit-identity with the reference.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from ._ifgsm_element import step_element

_element = njit(step_element)


# No cache=True: numba keys its cache on this file alone, so an edit to _ifgsm_element.py would
# leave a stale kernel running.  Compiling costs about a second, once per process.
@njit(nogil=True)
def _step(
    x: np.ndarray,
    grad: np.ndarray,
    centre: np.ndarray,
    out: np.ndarray,
    alpha: np.float32,
    eps: np.float32,
) -> None:
    for i in range(x.size):
        out[i] = _element(x[i], grad[i], centre[i], alpha, eps)


def unavailable() -> str | None:
    """Why this implementation cannot run here, or None: numba's CPU target always can."""
    return None


def run(
    x: torch.Tensor,
    grad: torch.Tensor,
    centre: torch.Tensor,
    alpha: float,
    eps: float,
    out: torch.Tensor,
) -> None:
    """Write the step into ``out`` (contiguous); the inputs are read flat."""
    if x.device.type != "cpu":
        raise ValueError(f"cpu-fused runs on CPU tensors, got {x.device}")
    flat = [t.detach().reshape(-1).numpy() for t in (x, grad, centre, out)]
    _step(*flat, np.float32(alpha), np.float32(eps))
