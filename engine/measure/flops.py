"""How much arithmetic a computation does, and how fast this machine multiplies matrices.

Two counts, because neither alone is right for every victim: torch's ``FlopCounterMode`` counts
matmuls and convolutions (2 FLOPs per multiply-add), which is nearly all of a CNN; an
element-wise model such as BRISQUE also spends about half its arithmetic in pointwise ops and
reductions, which :class:`ElementwiseCounter` counts (1 per element).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..victims import Victim

PEAK_MATMUL_SIZE = 2048
PEAK_REPEATS = 5
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@functools.cache
def matmul_peak_gflops(precision: str, threads: int) -> float:
    """Best GFLOP/s of a large square matmul at this precision and thread count."""
    dtype = PRECISION_DTYPES[precision]
    n = PEAK_MATMUL_SIZE
    with torch_threads(threads):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)  # warm-up: thread pool and kernel selection
        best = math.inf
        for _ in range(PEAK_REPEATS):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


class ElementwiseCounter(TorchDispatchMode):
    """Counts the aten work FlopCounterMode leaves out: one operation per output element of a
    pointwise op (add, mul, exp, lgamma, ...) and per input element of a reduction (sum, mean,
    amax, ...).  Other ops (copies, views, indexing, pooling) are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        if torch.Tag.pointwise in func.tags:
            self.ops += sum(t.numel() for t in tree_leaves(out) if isinstance(t, Tensor))
        elif torch.Tag.reduction in func.tags and isinstance(args[0], Tensor):
            self.ops += args[0].numel()
        return out


@dataclass(frozen=True)
class Work:
    """Arithmetic of one computation, in GFLOP."""

    matmul_conv: float  # matmuls and convolutions (FlopCounterMode: 2 per multiply-add)
    elementwise: float  # pointwise and reduction ops (ElementwiseCounter: 1 per element)

    @property
    def total(self) -> float:
        return self.matmul_conv + self.elementwise


def count_work(fn: Callable[[], object]) -> Work:
    """Run ``fn`` (forward and backward alike) and count its arithmetic."""
    with FlopCounterMode(display=False) as flops, ElementwiseCounter() as elementwise:
        fn()
    return Work(flops.get_total_flops() / 1e9, elementwise.ops / 1e9)


def victim_work_per_row(victim: Victim, geometry: tuple[int, int]) -> Work:
    """Arithmetic of one forward + input-gradient pass on one image at the victim's input size.

    Matmul/conv FLOPs alone suit CNNs but miss about half of an element-wise model such as
    BRISQUE (filters are convolutions, then moments and special functions), hence both counts.
    """
    x = victim.preprocess(torch.rand(3, *geometry)).detach()[None].requires_grad_(True)

    def forward_backward() -> None:
        outputs = victim.network(x).float()
        loss = victim.loss(outputs, victim.reference(outputs.detach(), outputs.detach())).sum()
        loss.backward()  # FlopCounterMode's module hooks refuse autograd.grad on a leaf input

    return count_work(forward_backward)
