"""``numba-cuda``: the I-FGSM step as a ``numba.cuda`` kernel, one thread per element.

Runs on CUDA tensors with an NVIDIA GPU, or on CPU tensors under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported; slow, for tests).  There is no GPU in
this project's machines, so only the simulator has run it.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import config, cuda

from ._ifgsm_element import step_element

THREADS = 256
# Enough blocks to fill any current GPU; the grid-stride loop covers the rest of a large image.
MAX_BLOCKS = 4096

_element = cuda.jit(device=True)(step_element)


@cuda.jit
def _kernel(
    x: np.ndarray,
    grad: np.ndarray,
    centre: np.ndarray,
    out: np.ndarray,
    alpha: np.float32,
    eps: np.float32,
) -> None:
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = _element(x[i], grad[i], centre[i], alpha, eps)


def unavailable() -> str | None:
    """Why this implementation cannot run here, or None."""
    if cuda.is_available():
        return None
    return (
        "numba-cuda needs an NVIDIA GPU with its driver, or numba's CUDA simulator "
        "(NUMBA_ENABLE_CUDASIM=1 set before numba is imported); neither is here"
    )


def launch(
    x: torch.Tensor,
    grad: torch.Tensor,
    centre: torch.Tensor,
    alpha: float,
    eps: float,
    out: torch.Tensor,
    blocks: int,
    threads: int = THREADS,
) -> None:
    """Launch on an explicit grid (tests use a small one to exercise the grid-stride loop)."""
    flat = [t.detach().reshape(-1) for t in (x, grad, centre, out)]
    scalars = (np.float32(alpha), np.float32(eps))
    if config.ENABLE_CUDASIM:
        if x.device.type != "cpu":
            raise ValueError(f"under the simulator numba-cuda takes CPU tensors, got {x.device}")
        _kernel[blocks, threads](*(t.numpy() for t in flat), *scalars)
        return
    if x.device.type != "cuda":
        raise ValueError(f"numba-cuda takes CUDA tensors, got {x.device}")
    # torch's current stream, so the step is ordered with the gradient that feeds it.
    stream = cuda.external_stream(torch.cuda.current_stream(x.device).cuda_stream)
    _kernel[blocks, threads, stream](*(cuda.as_cuda_array(t) for t in flat), *scalars)


def run(
    x: torch.Tensor,
    grad: torch.Tensor,
    centre: torch.Tensor,
    alpha: float,
    eps: float,
    out: torch.Tensor,
) -> None:
    """Write the step into ``out`` (contiguous), on a grid sized to the array."""
    blocks = max(1, min(MAX_BLOCKS, -(-x.numel() // THREADS)))
    launch(x, grad, centre, alpha, eps, out, blocks)
