"""BRISQUE's per-pixel part at any resolution, fused: MSCN moment sums and their input gradient.

BRISQUE reads a grey image through two scales of the MSCN map ``m = (g - mu) / (dev + c)``
(``mu``, ``dev`` from zero-padded 7x7 Gaussian moments) and its four neighbour products; every
feature is a function of four sums per map.  This module computes those sums in one streaming
pass per scale (the first also writes the half scale), and maps their gradient back to the grey
image in one more per scale (the first also applies the half scale's adjoint):

>>> sums = mscn_moment_sums(batch[:, 0], spec)     # (B, 2, 5, 4) of a (B, 1, h, w) batch
>>> sums = mscn_moment_sums([small, large], spec)  # photos of different sizes in one call

The per-map sums are ``(count of x < 0, sum of x^2 over x < 0, sum of x^2, sum of |x|)``; the
first has no gradient.  The scalar shape fits and the regressor stay in torch autograd.

How it runs: numba-compiled row loops (``_brisque_rows``) on row bands of every image at once,
claimed by ``torch.get_num_threads()`` threads: torch's own OpenMP threads where torch has an
OpenMP runtime, else Python threads (the loops release the GIL).  A band
recomputes a halo of up to seven rows either side instead of storing full-size intermediates,
so the memory is the input, its gradient and the quarter-size second scale, whatever the photo.
Results are the same bit for bit whatever the banding and thread count.  Per-pixel values are
float64; the result is in the input's dtype (float32 or float64).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from . import _brisque_rows as rows

SCALES = 2
MAPS, SUMS = rows.MAPS, rows.SUMS
# A band recomputes up to seven rows either side: bands shorter than this are not worth it.
MIN_BAND_ROWS = 32


@dataclass(frozen=True)
class MscnSpec:
    """The constants of BRISQUE's MSCN map and of its 1/2 downscale.

    Args:
        taps: the 7 taps of the normalised 1-D Gaussian (the 2-D kernel is their outer product).
        c: the stabiliser added to the local deviation.
        var_eps: ``dev = (var^2 + var_eps^2)^(1/4)``, a smooth ``sqrt(|var|)``.
        half_taps: the 4 taps of the 1/2 downscale at pixel centres (borders replicated).
    """

    taps: tuple[float, ...]
    c: float
    var_eps: float
    half_taps: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        # The row loops are written for BRISQUE's 7x7 window and 4-tap half scale.
        if len(self.taps) != 7 or len(self.half_taps) != 4:
            raise ValueError(f"expected 7 taps and 4 half-scale taps, got {len(self.taps)} and {len(self.half_taps)}")


def half_size(height: int, width: int) -> tuple[int, int]:
    """The second scale's size: cv2 rounds half to even, like Python's ``round``."""
    return round(height / 2), round(width / 2)


def map_counts(height: int, width: int) -> tuple[int, ...]:
    """Values per map at one scale: the MSCN map, then horizontal, vertical, two diagonals."""
    h, w = height, width
    return (h * w, h * (w - 1), (h - 1) * w, (h - 1) * (w - 1), (h - 1) * (w - 1))


_FUSED: ContextVar[bool] = ContextVar("camo_engine_fused_brisque", default=True)


@contextmanager
def plain_formulation() -> Iterator[None]:
    """Within it (this thread or task), victims compute with their plain torch ops, as their
    exported graphs do: ``export/check.py`` holds an exported graph to torch fp32 of the same
    formulation, whose rounding the kernel's float64 per-pixel values do not share."""
    token = _FUSED.set(False)
    try:
        yield
    finally:
        _FUSED.reset(token)


def runs_eagerly(t: Tensor) -> bool:
    """Whether the kernel should take ``t``: a plain CPU tensor it can read now, not a fake or
    functorch-wrapped one, while nothing traces, compiles or intercepts torch operations
    (``make_fx``, ``torch.export``, ``torch.jit.trace``, ``FlopCounterMode``: they must see
    torch ops), outside :func:`plain_formulation`."""
    return (
        _FUSED.get()
        and type(t) is Tensor
        and t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and not torch._C._functorch.is_functorch_wrapped_tensor(t)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not is_in_torch_dispatch_mode()
    )


def _pieces(sizes: Sequence[tuple[int, int]], threads: int) -> list[int]:
    """Bands per image: about two per thread over the call (so that uneven images still
    balance), none under ``MIN_BAND_ROWS`` rows (a band recomputes a seven-row halo)."""
    if threads <= 1:
        return [1] * len(sizes)
    total = sum(h * w for h, w in sizes)
    return [
        max(1, min(round(2 * threads * h * w / total), h // MIN_BAND_ROWS)) for h, w in sizes
    ]


def _bands(height: int, pieces: int, band_rows: int | None) -> list[tuple[int, int]]:
    """Row ranges covering ``height``: ``pieces`` near-equal bands, or ``band_rows`` each."""
    rows_per = band_rows or -(-height // pieces)
    return [(r, min(r + rows_per, height)) for r in range(0, height, rows_per)]


@cache
def _pool(pid: int) -> ThreadPoolExecutor:
    """The worker threads of process ``pid``: a forked child gets its own (threads do not
    survive a fork)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="brisque")


@cache
def _omp_parallel() -> Callable[..., None] | None:
    """``GOMP_parallel`` of the OpenMP runtime torch runs its own threads on, or None.

    Bands run on torch's OpenMP threads when there is one: after each of torch's parallel
    regions its idle threads spin (libgomp's default, several ms), so threads of our own
    competed with them for the cores; a 1024x640 step at batch 1 and 2 threads took 52 CPU ms
    for 31 ms of wall time (docs/brisque-fast.md). GNU libgomp and LLVM's and Intel's runtimes
    all export this entry point."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        function = ctypes.CDLL(None).GOMP_parallel
    except (OSError, AttributeError, TypeError):  # no such symbol, or no global namespace (Windows)
        return None
    function.restype = None
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    return function


class _Plan:
    """The constants as arrays, and how one call shares its bands out to threads."""

    def __init__(self, spec: MscnSpec, band_rows: int | None, threads: int | None) -> None:
        self.params = np.array((*spec.taps, *spec.half_taps, spec.c, float(spec.var_eps) ** 2))
        self.band_rows = band_rows
        self.threads = threads or torch.get_num_threads()

    def bands(self, images: Sequence[np.ndarray]) -> Iterator[tuple[int, int, int]]:
        """(image index, first row, end row) of every band of every image."""
        sizes = [im.shape for im in images]
        for i, ((h, _), pieces) in enumerate(zip(sizes, _pieces(sizes, self.threads))):
            for r0, r1 in _bands(h, pieces, self.band_rows):
                yield i, r0, r1

    def run(self, jobs: list[list[int]]) -> None:
        """Band jobs (rows of a ``rows.run_jobs`` table) on ``threads`` threads, largest
        first, each thread taking the next job when it is done with one; on torch's OpenMP
        threads if there are some, else on a pool of Python threads."""
        jobs.sort(key=lambda job: -(job[rows.END] - job[rows.FIRST]) * job[rows.WIDTH])
        table = np.array(jobs, dtype=np.int64).reshape(-1, rows.JOB_FIELDS)
        counter = np.zeros(1, dtype=np.int64)
        threads = min(self.threads, len(jobs))
        parallel = _omp_parallel()
        if threads <= 1:
            rows.run_jobs(table, self.params, counter)
        elif parallel is not None:
            call = np.array((table.ctypes.data, len(table), self.params.ctypes.data, counter.ctypes.data))
            parallel(rows.run_jobs_omp.address, call.ctypes.data, threads, 0)
        else:
            pool = _pool(os.getpid())
            futures = [pool.submit(rows.run_jobs, table, self.params, counter) for _ in range(threads - 1)]
            rows.run_jobs(table, self.params, counter)  # the calling thread takes a share too
            for future in futures:
                future.result()


_NO_HALF = np.zeros((0, 0))


def _job(kind: int, image: np.ndarray, r0: int, r1: int, out: np.ndarray, half: np.ndarray,
         coef: np.ndarray = _NO_HALF) -> list[int]:
    """One band job: a row of ``rows.run_jobs``' table. The arrays must stay alive until the
    plan has run it; the job passes bare addresses, so strides are checked here."""
    for array in (image, out, half, coef):
        if not array.flags.c_contiguous:
            raise ValueError(f"band job arrays must be C-contiguous, got strides {array.strides}")
    job = [0] * rows.JOB_FIELDS
    job[rows.KIND], job[rows.WIDE] = kind, int(image.dtype == np.float64)
    job[rows.FIRST], job[rows.END] = r0, r1
    job[rows.HEIGHT], job[rows.WIDTH] = image.shape
    job[rows.HALF_HEIGHT], job[rows.HALF_WIDTH] = half.shape
    job[rows.IMAGE], job[rows.OUT] = image.ctypes.data, out.ctypes.data
    job[rows.HALF], job[rows.COEF] = half.ctypes.data, coef.ctypes.data
    return job


def _forward(grays: Sequence[np.ndarray], plan: _Plan) -> tuple[np.ndarray, list[np.ndarray]]:
    """((B, 2, 5, 4) float64 sums, the images' second scales (float64))."""
    halves = [np.empty(half_size(*g.shape)) for g in grays]
    # Sums per row, added up in row order afterwards: the same whatever the banding.
    full_rows = [np.zeros((g.shape[0], MAPS * SUMS)) for g in grays]
    half_rows = [np.zeros((h.shape[0], MAPS * SUMS)) for h in halves]
    plan.run([_job(rows.FORWARD, grays[i], r0, r1, full_rows[i], halves[i]) for i, r0, r1 in plan.bands(grays)])
    plan.run([_job(rows.FORWARD, halves[i], r0, r1, half_rows[i], _NO_HALF) for i, r0, r1 in plan.bands(halves)])
    sums = np.stack([np.stack((f.sum(0), h.sum(0))) for f, h in zip(full_rows, half_rows)])
    return sums.reshape(len(grays), SCALES, MAPS, SUMS), halves


def _backward(
    grays: Sequence[np.ndarray],
    halves: Sequence[np.ndarray],
    coef: np.ndarray,
    outs: Sequence[np.ndarray],
    plan: _Plan,
) -> None:
    """Write d loss / d gray into ``outs`` from ``coef`` (B, 2, 5, 3): the second scale's
    gradient first, then the first scale's, which adds the downscale's adjoint of it."""
    d_halves = [np.empty_like(half) for half in halves]
    plan.run([
        _job(rows.BACKWARD, halves[i], r0, r1, d_halves[i], _NO_HALF, coef[i, 1])
        for i, r0, r1 in plan.bands(halves)
    ])
    plan.run([
        _job(rows.BACKWARD, grays[i], r0, r1, outs[i], d_halves[i], coef[i, 0])
        for i, r0, r1 in plan.bands(grays)
    ])


def _arrays(images: Sequence[Tensor]) -> list[np.ndarray]:
    """The (h, w) arrays of (h, w) and (B, h, w) tensors, without copies where contiguous."""
    return [a for im in images for a in _split(im.detach().contiguous().numpy())]


def _split(array: np.ndarray) -> list[np.ndarray]:
    return [array] if array.ndim == 2 else list(array)


class _MomentSums(torch.autograd.Function):
    """(B, 2, 5, 4) sums of (h, w) images and (n, h, w) batches; backward: d sums -> d images."""

    @staticmethod
    def forward(ctx, plan: _Plan, *images: Tensor) -> Tensor:  # type: ignore[override]
        sums, halves = _forward(_arrays(images), plan)
        ctx.plan, ctx.halves = plan, halves  # the second scales: a quarter of the pixels
        ctx.save_for_backward(*images)
        return torch.from_numpy(sums).to(images[0].dtype)

    @staticmethod
    def backward(ctx, grad_sums: Tensor):  # type: ignore[override]
        images = ctx.saved_tensors
        coef = np.ascontiguousarray(grad_sums.detach().double()[..., 1:].numpy())
        outs = [torch.empty_like(im, memory_format=torch.contiguous_format) for im in images]
        _backward(_arrays(images), ctx.halves, coef, _arrays(outs), ctx.plan)
        return (None, *outs)


class _WeightedChannels(torch.autograd.Function):
    """(1, H, W) weighted sum of a (3, H, W) image's channels in one pass; backward in one."""

    @staticmethod
    def forward(ctx, image: Tensor, weights: tuple[float, float, float]) -> Tensor:  # type: ignore[override]
        planes = [plane.numpy() for plane in image.detach()]  # any strides, no copy
        out = torch.empty((1, *image.shape[1:]), dtype=image.dtype)
        # The weights rounded to the image's type, as torch's scalar multiplications do.
        scalars = (planes[0].dtype.type(w) for w in weights)
        rows.weighted_channels(*planes, *scalars, out[0].numpy())
        ctx.weights = weights
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weights = torch.tensor(ctx.weights, dtype=grad.dtype).view(3, 1, 1)
        # What autograd gives through the five ops (w_k * grad per channel), without its zeroed
        # full-size buffers per channel and their sums: one pass.
        return weights * grad, None


def weighted_channels(image: Tensor, weights: tuple[float, float, float]) -> Tensor:
    """``(w0 * image[0] + w1 * image[1] + w2 * image[2])[None]``, differentiable, bit for bit
    what those torch operations give, in one pass each way.

    Shape:
        - image: (3, H, W), CPU, float32 or float64 (else the torch operations run).
        - Output: (1, H, W).
    """
    if not runs_eagerly(image) or image.ndim != 3 or image.shape[0] != 3:
        w0, w1, w2 = weights
        return (w0 * image[0] + w1 * image[1] + w2 * image[2])[None]
    return _WeightedChannels.apply(image, tuple(float(w) for w in weights))


def mscn_moment_sums(
    images: Tensor | Sequence[Tensor],
    spec: MscnSpec,
    band_rows: int | None = None,
    threads: int | None = None,
) -> Tensor:
    """Moment sums of each grey image's MSCN maps at two scales, differentiable.

    Args:
        images: a (B, h, w) batch, or a sequence of (h, w) images and (n, h, w) batches of
            any sizes (B images in all, in order); CPU, float32 or float64, one dtype.
        spec: the MSCN constants.
        band_rows: rows per band (default: about two bands per thread over the call); the
            results do not depend on it.
        threads: threads to share the bands out to (default ``torch.get_num_threads()``).

    Shape:
        - Output: (B, 2, 5, 4) in the images' dtype: per scale (full, half) and map (MSCN,
          horizontal, vertical, diagonal, anti-diagonal product), the count of negative values,
          the sum of their squares, the sum of squares and the sum of absolute values.
    """
    images = [images] if isinstance(images, Tensor) else list(images)
    if not images:
        raise ValueError("mscn_moment_sums needs at least one image")
    dtype = images[0].dtype
    for i, im in enumerate(images):
        if im.ndim not in (2, 3) or im.device.type != "cpu" or im.dtype != dtype:
            raise ValueError(
                f"images[{i}]: expected an (h, w) or (n, h, w) CPU tensor of {dtype}, got "
                f"{tuple(im.shape)} {im.dtype} on {im.device}"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"images[{i}]: float32 or float64 expected, got {dtype}")
        if min(im.shape[-2:]) < 1:
            raise ValueError(f"images[{i}]: empty image {tuple(im.shape)}")
    return _MomentSums.apply(_Plan(spec, band_rows, threads), *images)
