"""Compare exported graphs with torch autograd on the original (unfolded) victim.

Tolerances, per output: relative error ``||a - b|| / ||b||`` at most ``1e-4`` in fp32, and the
gradient's sign agreeing on at least 99.9 % of the entries where the reference is non-zero.

One exception, measured rather than assumed: the input gradient of a deep ReLU/ReLU6 network is
piecewise constant in its gates, and fp32 rounding flips the few gates that sit within ~1e-6
of a kink.  Torch's own fp32 gradient then differs from the exact (fp64) one by more than 1e-4
(efficientnet-lite0 on the sample photos: ~7e-4; a random-init ResNet50: ~7e-3, with 0.1 %
of signs flipped).  Such a graph cannot match torch fp32 closer than torch matches itself, so
the gradient's limits are ``max(1e-4, 3 x torch's own rel err)`` and a sign disagreement of at
most ``max(0.1 %, 3 x torch's own)`` (ONNX-vs-torch <= ONNX-vs-exact + torch-vs-exact, with
ONNX allowed twice torch's own error), both measured on the same batch against fp64.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from ..victims.base import Victim

MAX_REL_ERR = 1e-4
MIN_SIGN_AGREEMENT = 0.999


class ExportCheckError(AssertionError):
    """An exported graph disagrees with torch autograd."""


def relative_error(actual: Tensor, reference: Tensor) -> float:
    """``||a - b|| / ||b||`` (the absolute norm if the reference is all zeros)."""
    actual, reference = actual.double(), reference.double()
    scale = reference.norm().item()
    return (actual - reference).norm().item() / (scale if scale > 0 else 1.0)


def sign_agreement(actual: Tensor, reference: Tensor) -> float:
    """Share of non-zero reference entries whose sign ``actual`` matches (1.0 if none)."""
    nonzero = reference != 0
    if not nonzero.any():
        return 1.0
    return (actual.sign() == reference.sign())[nonzero].double().mean().item()


@dataclass(frozen=True)
class CheckResult:
    """Agreement of one exported graph pair with torch on one batch."""

    outputs_rel_err: float
    loss_rel_err: float
    grad_rel_err: float
    grad_sign_agreement: float
    # Torch fp32 against torch fp64 on the same batch: the reference's own errors.
    grad_noise_floor: float = 0.0
    sign_noise_floor: float = 0.0  # share of flipped signs

    @property
    def grad_limit(self) -> float:
        return max(MAX_REL_ERR, 3 * self.grad_noise_floor)

    @property
    def sign_limit(self) -> float:
        return 1 - max(1 - MIN_SIGN_AGREEMENT, 3 * self.sign_noise_floor)

    @property
    def ok(self) -> bool:
        return (
            max(self.outputs_rel_err, self.loss_rel_err) <= MAX_REL_ERR
            and self.grad_rel_err <= self.grad_limit
            and self.grad_sign_agreement >= self.sign_limit
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def torch_reference(victim: Victim, batch: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs, loss and input gradient by torch autograd (what ``TorchBackend.step`` does)."""
    x = batch.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        outputs = victim.network(x).float()
        loss = victim.loss(outputs, targets)
        (g,) = torch.autograd.grad(loss.sum(), x)
    return outputs.detach(), loss.detach(), g


def noise_floor(victim: Victim, batch: Tensor, targets: Tensor, reference: Tensor) -> tuple[float, float]:
    """Relative error and share of flipped signs of torch's fp32 gradient against the fp64 one."""
    exact = torch_reference(copy.deepcopy(victim).double(), batch.double(), targets.double())[2]
    return relative_error(reference, exact), 1 - sign_agreement(reference, exact)


def compare(
    actual: tuple[Tensor, Tensor, Tensor],
    reference: tuple[Tensor, Tensor, Tensor],
    floor: tuple[float, float] = (0.0, 0.0),
) -> CheckResult:
    """Metrics of (outputs, loss, grad) against a reference triple with the reference's noise ``floor``."""
    return CheckResult(
        outputs_rel_err=relative_error(actual[0], reference[0]),
        loss_rel_err=relative_error(actual[1], reference[1]),
        grad_rel_err=relative_error(actual[2], reference[2]),
        grad_sign_agreement=sign_agreement(actual[2], reference[2]),
        grad_noise_floor=floor[0],
        sign_noise_floor=floor[1],
    )


def run_onnx(path: Path, feeds: dict[str, Tensor]) -> list[Tensor]:
    """Run an ONNX file once on CPU with default options."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = session.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in feeds.items()})
    return [torch.from_numpy(r) for r in results]


def check_graphs(
    victim: Victim, forward: Path, gradient: Path, batch: Tensor, targets: Tensor
) -> CheckResult:
    """Check an exported forward/gradient pair; raise :class:`ExportCheckError` on failure.

    The forward graph must match the gradient graph's outputs as well as torch's.
    """
    reference = torch_reference(victim, batch, targets)
    floor = noise_floor(victim, batch, targets, reference[2])
    result = compare(tuple(run_onnx(gradient, {"images": batch, "targets": targets})), reference, floor)
    (outputs,) = run_onnx(forward, {"images": batch})
    forward_err = relative_error(outputs, reference[0])
    if not result.ok or forward_err > MAX_REL_ERR:
        raise ExportCheckError(
            f"{victim.name}: exported graphs disagree with torch autograd on a batch of "
            f"{batch.shape[0]} at {tuple(batch.shape[-2:])}: {result.as_dict()}, forward rel err "
            f"{forward_err:.3g} (limits: rel err {MAX_REL_ERR}, grad {result.grad_limit:.3g}, sign "
            f"agreement {result.sign_limit:.4g})"
        )
    return result
