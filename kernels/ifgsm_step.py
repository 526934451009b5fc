"""The fused I-FGSM update behind one signature, with interchangeable implementations.

``sign_step_project(x, grad, centre, alpha, eps, out=None)`` returns
``clamp(centre + clamp((x - alpha*sign(grad)) - centre, -eps, eps), 0, 1)``: the sign step, then
the projection onto the L-inf ball around ``centre``, then the clamp to [0, 1], exactly as
``IFGSM`` does it.  The implementations are bit-identical to the torch reference in float32:
same operation order, ``alpha``/``eps`` rounded to float32, torch's sign (0 for +-0 and NaN).

* ``"torch"``: the reference, plain torch ops on any device;
* ``"cpu-fused"``: one single-threaded numba pass over the flat arrays, no temporaries;
* ``"numba-cuda"``: a ``numba.cuda`` kernel; needs a GPU or numba's CUDA simulator;
* ``"cuda-source"``: ``ifgsm_step.cu`` via NVRTC and cuda-bindings; needs a GPU.

No GPU is in this project's machines: ``numba-cuda`` is checked bit for bit under the simulator,
``cuda-source`` is only compiled (tests/test_kernels.py).

Tensors are float32, of one shape (any: a photo or a batch) and on one device.  ``out`` may be one
of the inputs itself, for an update in place, but must not overlap one partially.  No autograd.

>>> step = select("cpu-fused")
>>> x = step(x, grad, centre, alpha=1 / 255, eps=8 / 255, out=x)
"""

from __future__ import annotations

import functools
import importlib
from typing import Protocol

import torch
from torch import Tensor

IMPLEMENTATIONS = ("torch", "cpu-fused", "numba-cuda", "cuda-source")

# The modules behind the non-reference names, imported only when asked for (numba is slow to load).
_MODULES = {
    "cpu-fused": "._ifgsm_cpu",
    "numba-cuda": "._ifgsm_numba_cuda",
    "cuda-source": "._ifgsm_cuda_source",
}


class StepKernel(Protocol):
    """The signature every implementation has."""

    def __call__(
        self,
        x: Tensor,
        grad: Tensor,
        centre: Tensor,
        alpha: float,
        eps: float,
        out: Tensor | None = None,
    ) -> Tensor: ...


class ImplementationUnavailable(RuntimeError):
    """The implementation exists but cannot run on this machine (no GPU, missing package)."""


def reference(
    x: Tensor, grad: Tensor, centre: Tensor, alpha: float, eps: float, out: Tensor | None = None
) -> Tensor:
    """The torch reference: ``IFGSM``'s step and ``IFGSM._project``, op for op."""
    _check(x, grad, centre, out)
    with torch.no_grad():
        stepped = x - alpha * grad.sign()
        result = (centre + (stepped - centre).clamp(-eps, eps)).clamp_(0, 1)
        return result if out is None else out.copy_(result)


def _unavailable(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    if name == "torch":
        return None
    try:
        module = importlib.import_module(_MODULES[name], __package__)
    except ImportError as exc:
        return f"{name} needs a package that is not installed: {exc}"
    return module.unavailable()


def available_implementations() -> list[str]:
    """The implementations that can run on this machine, reference first."""
    return [name for name in IMPLEMENTATIONS if _unavailable(name) is None]


@functools.cache
def select(name: str) -> StepKernel:
    """The implementation called ``name``; ImplementationUnavailable if it cannot run here."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {name!r}; choose from {IMPLEMENTATIONS}")
    reason = _unavailable(name)
    if reason is not None:
        raise ImplementationUnavailable(reason)
    if name == "torch":
        return reference
    run = importlib.import_module(_MODULES[name], __package__).run

    def step(
        x: Tensor,
        grad: Tensor,
        centre: Tensor,
        alpha: float,
        eps: float,
        out: Tensor | None = None,
    ) -> Tensor:
        """The step by the selected implementation; the contract is ``reference``'s."""
        _check(x, grad, centre, out)
        out = torch.empty_like(x, memory_format=torch.contiguous_format) if out is None else out
        run(x.contiguous(), grad.contiguous(), centre.contiguous(), float(alpha), float(eps), out)
        return out

    step.__name__ = step.__qualname__ = f"sign_step_project[{name}]"
    return step


def sign_step_project(
    x: Tensor, grad: Tensor, centre: Tensor, alpha: float, eps: float, out: Tensor | None = None
) -> Tensor:
    """The step with the fastest implementation for the tensors' device.

    On the CPU that is ``cpu-fused`` when numba is installed; elsewhere the reference, since the
    GPU kernels have not been measured against it on a GPU.
    """
    name = "cpu-fused" if x.device.type == "cpu" and _unavailable("cpu-fused") is None else "torch"
    return select(name)(x, grad, centre, alpha, eps, out)


def _check(x: Tensor, grad: Tensor, centre: Tensor, out: Tensor | None) -> None:
    """One dtype, shape and device; ``out`` contiguous and overlapping no input partially."""
    for label, t in (("x", x), ("grad", grad), ("centre", centre), ("out", out)):
        if t is None:
            continue
        if t.dtype != torch.float32:
            raise ValueError(f"{label} must be float32, got {t.dtype}")
        if t.shape != x.shape or t.device != x.device:
            raise ValueError(
                f"{label} is {tuple(t.shape)} on {t.device}, x is {tuple(x.shape)} on {x.device}"
            )
    if out is None:
        return
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    for label, t in (("x", x), ("grad", grad), ("centre", centre)):
        if _overlap(out, t) and not (t.is_contiguous() and t.data_ptr() == out.data_ptr()):
            raise ValueError(f"out overlaps {label} partially; pass {label} itself or a new tensor")


def _overlap(a: Tensor, b: Tensor) -> bool:
    """Whether the memory spans of two tensors on one device intersect."""
    a_start, b_start = a.data_ptr(), b.data_ptr()
    a_end = a_start + _span(a)
    b_end = b_start + _span(b)
    return a_start < b_end and b_start < a_end


def _span(t: Tensor) -> int:
    """Bytes from the first to one past the last element of ``t``."""
    if t.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return (last + 1) * t.element_size()
