"""Decompositions that let a traced input-gradient graph reach ONNX.

``make_fx`` applies these while tracing ``torch.func.grad``: every op below either has no
onnxscript translation (``convolution_backward``, ``avg_pool2d_backward``, ``lgamma``,
``digamma``, ``searchsorted``) or
would give ONNX an attribute that depends on the batch size (a depthwise convolution with one
group per image, as BRISQUE's separable blur uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch._decomp import core_aten_decompositions

aten = torch.ops.aten

# lgamma/digamma: shift the argument by SHIFT with the recurrences, then the asymptotic series.
# For x > 0 the float64 error is < 4e-8 over (0.05, 60), well below float32 resolution.
SHIFT = 4
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _shifted(x: Tensor) -> tuple[Tensor, Tensor]:
    """(z, 1/z) with z = x + SHIFT."""
    z = x + SHIFT
    return z, z.reciprocal()


def lgamma(x: Tensor) -> Tensor:
    """log Gamma(x) for x > 0: Stirling's series at x + 4, minus log(x (x+1) (x+2) (x+3))."""
    z, zi = _shifted(x)
    zi2 = zi * zi
    series = zi * (1 / 12 - zi2 * (1 / 360 - zi2 / 1260))
    product = x * (x + 1) * (x + 2) * (x + 3)
    return (z - 0.5) * torch.log(z) - z + HALF_LOG_2PI + series - torch.log(product)


def digamma(x: Tensor) -> Tensor:
    """psi(x) for x > 0: the asymptotic series at x + 4, minus sum 1/(x+k), k < 4."""
    z, zi = _shifted(x)
    zi2 = zi * zi
    series = 0.5 * zi + zi2 * (1 / 12 - zi2 * (1 / 120 - zi2 / 252))
    recurrence = sum((x + k).reciprocal() for k in range(SHIFT))
    return torch.log(z) - series - recurrence


def searchsorted(
    sorted_sequence: Tensor,
    values: Tensor,
    *,
    out_int32: bool = False,
    right: bool = False,
    side: str | None = None,
    sorter: Tensor | None = None,
) -> Tensor:
    """Insertion index into a 1-D sorted table: the count of entries below (or at) each value."""
    if sorted_sequence.ndim != 1 or sorter is not None:
        return NotImplemented
    below = sorted_sequence <= values[..., None] if right or side == "right" else sorted_sequence < values[..., None]
    return below.sum(-1, dtype=torch.int32 if out_int32 else torch.int64)


def _batch_folded(x: Tensor, weight: Tensor, groups: object) -> bool:
    """A depthwise conv over a (1, n, h, w) view whose n groups share one kernel (stride-0 expand).

    That is n independent single-channel images: ONNX can run it as a batch of n with group 1,
    whereas a group count equal to the (dynamic) batch cannot be an ONNX attribute.
    """
    return (
        not isinstance(groups, int)
        and x.shape[0] == 1
        and weight.shape[1] == 1
        and weight.stride(0) == 0
    )


def _unfolded(x: Tensor) -> Tensor:
    """(1, n, h, w) -> (n, 1, h, w)."""
    return x.reshape(x.shape[1], 1, *x.shape[2:])


def convolution(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
) -> Tensor:
    """Batch-folded depthwise convolutions as plain batched ones; anything else unchanged."""
    if bias is not None or not _batch_folded(x, weight, groups):
        return NotImplemented
    y = aten.convolution(_unfolded(x), weight[:1], None, stride, padding, dilation, transposed, output_padding, 1)
    return y.reshape(1, y.shape[0], *y.shape[2:])


def convolution_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[Tensor | None, None, None]:
    """Input gradient only: the transposed convolution with the same weights.

    ``output_padding`` restores the input rows/columns that the forward stride never reached.
    Weight and bias gradients are never asked for (weights are constants in the trace).
    """
    if transposed or output_mask[1] or output_mask[2]:
        return NotImplemented
    if not output_mask[0]:
        return None, None, None
    extra = []
    for i, (s, p, d) in enumerate(zip(stride, padding, dilation)):
        k = weight.shape[2 + i]
        reached = (grad_out.shape[2 + i] - 1) * s - 2 * p + d * (k - 1) + 1
        extra.append(x.shape[2 + i] - reached)
    if _batch_folded(x, weight, groups):
        g = aten.convolution(_unfolded(grad_out), weight[:1], None, stride, padding, dilation, True, extra, 1)
        return g.reshape(x.shape), None, None
    g = aten.convolution(grad_out, weight, None, stride, padding, dilation, True, extra, groups)
    return g, None, None


def avg_pool2d_backward(
    grad_out: Tensor,
    x: Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> Tensor:
    """Each output's gradient over its window's divisor, spread back over the window.

    The spreading is a transposed convolution with a ones kernel, run on the channels as a batch
    of single-channel images; ``count_include_pad=False`` divides by the count of real pixels in
    each window (a convolution of a ones image, as InceptionResNetV2's pools need).
    """
    if ceil_mode:
        return NotImplemented
    kh, kw = (list(kernel_size) * 2)[:2]
    sh, sw = (list(stride or kernel_size) * 2)[:2]
    ph, pw = (list(padding) * 2)[:2]
    n, c, h, w = x.shape
    out_h, out_w = grad_out.shape[-2:]
    ones = x.new_ones(1, 1, kh, kw)
    step, pad, unit = [sh, sw], [ph, pw], [1, 1]
    if divisor_override:
        divisor: Tensor | int = divisor_override
    elif count_include_pad:
        divisor = kh * kw  # floor mode: no window reaches past the padded border
    else:
        divisor = aten.convolution(x.new_ones(1, 1, h, w), ones, None, step, pad, unit, False, [0, 0], 1)
    spread = (grad_out / divisor).reshape(n * c, 1, out_h, out_w)
    # Rows/columns past the last window get no gradient (output_padding adds them as zeros).
    extra = [h - ((out_h - 1) * sh - 2 * ph + kh), w - ((out_w - 1) * sw - 2 * pw + kw)]
    g = aten.convolution(spread, ones, None, step, pad, unit, True, extra, 1)
    return g.reshape(n, c, h, w)


def replication_pad2d_backward(grad_out: Tensor, x: Tensor, padding: Sequence[int]) -> Tensor:
    """Sum the replicated border rows/columns back onto the edge pixels they copy."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    # Index of the source pixel for every padded position, along each axis.
    rows = torch.arange(-top, h + bottom, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-left, w + right, device=x.device).clamp(0, w - 1)
    row_map = (rows[None, :] == torch.arange(h, device=x.device)[:, None]).to(grad_out.dtype)
    col_map = (cols[:, None] == torch.arange(w, device=x.device)[None, :]).to(grad_out.dtype)
    return row_map @ grad_out @ col_map


def gradient_decompositions() -> dict[torch._ops.OpOverload, Callable[..., object]]:
    """Core ATen decompositions plus the ones above."""
    table = dict(core_aten_decompositions())
    table.update(
        {
            aten.convolution.default: convolution,
            aten.convolution_backward.default: convolution_backward,
            aten.replication_pad2d_backward.default: replication_pad2d_backward,
            aten.avg_pool2d_backward.default: avg_pool2d_backward,
            aten.lgamma.default: lgamma,
            aten.digamma.default: digamma,
            aten.searchsorted.Tensor: searchsorted,
        }
    )
    return table
