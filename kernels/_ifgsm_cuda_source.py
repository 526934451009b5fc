"""``cuda-source``: ``ifgsm_step.cu`` compiled at run time with NVRTC, launched with cuda-bindings.

Compiling needs only the NVRTC library (a pip package), so it works on this CPU-only machine and
the tests check it; loading and launching need an NVIDIA GPU and driver, and have never run in this
project.  Takes CUDA tensors and launches on torch's current stream.
"""

from __future__ import annotations

import ctypes
import functools
from importlib import resources
from typing import Any

import torch

KERNEL = "sign_step_project"
THREADS = 256
# Enough blocks to fill any current GPU; the grid-stride loop covers the rest of a large image.
MAX_BLOCKS = 4096
_ARG_TYPES = (ctypes.c_void_p,) * 4 + (ctypes.c_float, ctypes.c_float, ctypes.c_longlong)


def source() -> str:
    """The CUDA C++ source shipped beside this module."""
    return resources.files(__package__).joinpath("ifgsm_step.cu").read_text()


def compile_ptx(arch: str) -> bytes:
    """The kernel as PTX for a virtual architecture such as ``"compute_75"``; needs no GPU."""
    from cuda.bindings import nvrtc

    prog = _check(nvrtc.nvrtcCreateProgram(source().encode(), b"ifgsm_step.cu", 0, [], []))
    try:
        # No --use_fast_math: its flush-to-zero would give a denormal gradient sign 0, unlike torch.
        # FMA contraction is ruled out in the source itself, by the _rn intrinsics.
        opts = [f"--gpu-architecture={arch}".encode()]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            log = b" " * _check(nvrtc.nvrtcGetProgramLogSize(prog))
            _check(nvrtc.nvrtcGetProgramLog(prog, log))
            raise RuntimeError(f"NVRTC failed to compile ifgsm_step.cu: {log.decode().strip()}")
        ptx = b" " * _check(nvrtc.nvrtcGetPTXSize(prog))
        _check(nvrtc.nvrtcGetPTX(prog, ptx))
        return ptx
    finally:
        _check(nvrtc.nvrtcDestroyProgram(prog))


def unavailable() -> str | None:
    """Why this implementation cannot run here, or None."""
    try:
        import cuda.bindings  # noqa: F401
    except ImportError:
        return "cuda-source needs cuda-bindings (pip install cuda-bindings)"
    if not torch.cuda.is_available():
        return "cuda-source needs an NVIDIA GPU; torch.cuda.is_available() is False here"
    return None


@functools.cache
def _load(device: int) -> tuple[Any, Any]:
    """(primary context, kernel function) for one device, compiled for its architecture."""
    from cuda.bindings import driver

    major, minor = torch.cuda.get_device_capability(device)
    ptx = compile_ptx(f"compute_{major}{minor}")
    _check(driver.cuInit(0))
    # The primary context is the one torch's runtime uses, so torch's pointers are valid in it.
    context = _check(driver.cuDevicePrimaryCtxRetain(_check(driver.cuDeviceGet(device))))
    _check(driver.cuCtxSetCurrent(context))
    module = _check(driver.cuModuleLoadData(ptx))
    return context, _check(driver.cuModuleGetFunction(module, KERNEL.encode()))


def run(
    x: torch.Tensor,
    grad: torch.Tensor,
    centre: torch.Tensor,
    alpha: float,
    eps: float,
    out: torch.Tensor,
) -> None:
    """Write the step into ``out`` (contiguous; inputs contiguous too)."""
    from cuda.bindings import driver

    if x.device.type != "cuda":
        raise ValueError(f"cuda-source takes CUDA tensors, got {x.device}")
    context, function = _load(x.device.index)
    _check(driver.cuCtxSetCurrent(context))
    n = x.numel()
    blocks = max(1, min(MAX_BLOCKS, -(-n // THREADS)))
    pointers = tuple(t.data_ptr() for t in (x, grad, centre, out))
    params = (pointers + (alpha, eps, n), _ARG_TYPES)
    stream = driver.CUstream(torch.cuda.current_stream(x.device).cuda_stream)
    _check(driver.cuLaunchKernel(function, blocks, 1, 1, THREADS, 1, 1, 0, stream, params, 0))


def _check(result: tuple) -> Any:
    """Unpack a cuda-bindings ``(status, *values)`` result, raising on a failed status."""
    status, *values = result
    if int(status) != 0:
        raise RuntimeError(f"CUDA call failed: {status!r}")
    return values[0] if len(values) == 1 else None
