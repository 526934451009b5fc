"""Compare exported graphs with torch autograd on the original (unfolded) victim.

Outputs and loss: relative error ``||a - b|| / ||b||`` at most ``1e-4`` against torch fp32.
The input gradient is compared with the *exact* one, torch autograd in float64: its sign must
agree on at least 99.9 % of the entries where that is non-zero, and its relative error must be
at most ``1e-4`` or, where torch's own fp32 gradient is further than that from the exact one,
at most three times torch fp32's error.  Why no fp32 evaluation of these victims reaches 1e-4,
with the measured errors: benchmarks/NOTES.md, "ONNX gradient tolerance".
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from ..kernels.brisque import plain_formulation
from ..victims.base import Victim

MAX_REL_ERR = 1e-4
MIN_SIGN_AGREEMENT = 0.999
# How much further from the exact gradient than torch fp32 an fp32 graph may be (see above).
FP32_ERROR_FACTOR = 3.0

Triple = tuple[Tensor, Tensor, Tensor]  # outputs, per-image loss, input gradient




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

    outputs_rel_err: float  # against torch fp32
    loss_rel_err: float  # against torch fp32
    grad_rel_err: float  # against torch fp64
    grad_sign_agreement: float  # against torch fp64
    # Torch fp32's own gradient against torch fp64 on the same batch.
    torch_grad_rel_err: float = 0.0

    @property
    def grad_limit(self) -> float:
        return max(MAX_REL_ERR, FP32_ERROR_FACTOR * self.torch_grad_rel_err)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the measures past their limits (empty when the graphs agree)."""
        over = {
            "outputs_rel_err": self.outputs_rel_err > MAX_REL_ERR,
            "loss_rel_err": self.loss_rel_err > MAX_REL_ERR,
            "grad_rel_err": self.grad_rel_err > self.grad_limit,
            "grad_sign_agreement": self.grad_sign_agreement < MIN_SIGN_AGREEMENT,
        }
        return tuple(name for name, bad in over.items() if bad)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class ExportCheckError(AssertionError):
    """An exported graph disagrees with torch autograd: ``result`` and ``forward_rel_err`` say
    which measures failed."""

    def __init__(self, message: str, result: CheckResult, forward_rel_err: float) -> None:
        super().__init__(message)
        self.result = result
        self.forward_rel_err = forward_rel_err


def torch_reference(victim: Victim, batch: Tensor, targets: Tensor) -> Triple:
    """Outputs, loss and input gradient by torch autograd (what ``TorchBackend.step`` does), of
    the plain torch formulation that is exported (not a fused kernel's)."""
    x = batch.detach().clone().requires_grad_(True)
    with torch.enable_grad(), plain_formulation():
        outputs = victim.network(x).float()
        loss = victim.loss(outputs, targets)
        (g,) = torch.autograd.grad(loss.sum(), x)
    return outputs.detach(), loss.detach(), g


def exact_reference(victim: Victim, batch: Tensor, targets: Tensor) -> Triple:
    """:func:`torch_reference` of a float64 copy of the victim: the exact values, for fp32."""
    return torch_reference(copy.deepcopy(victim).double(), batch.double(), targets.double())


def compare(actual: Triple, reference: Triple, exact: Triple | None = None) -> CheckResult:
    """Metrics of ``actual`` against torch fp32 ``reference`` and, for the gradient, ``exact``.

    Without ``exact`` the gradient is compared with ``reference`` itself and the limit is
    ``1e-4`` (for graphs whose fp32 gradient is exact to far better than that).
    """
    exact_grad = reference[2] if exact is None else exact[2]
    return CheckResult(
        outputs_rel_err=relative_error(actual[0], reference[0]),
        loss_rel_err=relative_error(actual[1], reference[1]),
        grad_rel_err=relative_error(actual[2], exact_grad),
        grad_sign_agreement=sign_agreement(actual[2], exact_grad),
        torch_grad_rel_err=0.0 if exact is None else relative_error(reference[2], exact_grad),
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
    exact = exact_reference(victim, batch, targets)
    result = compare(tuple(run_onnx(gradient, {"images": batch, "targets": targets})), reference, exact)
    (outputs,) = run_onnx(forward, {"images": batch})
    forward_err = relative_error(outputs, reference[0])
    if not result.ok or forward_err > MAX_REL_ERR:
        raise ExportCheckError(
            f"{victim.name}: exported graphs disagree with torch autograd on a batch of "
            f"{batch.shape[0]} at {tuple(batch.shape[-2:])}: {result.as_dict()}, forward rel err "
            f"{forward_err:.3g} (limits: rel err {MAX_REL_ERR}, grad {result.grad_limit:.3g}, sign "
            f"agreement {MIN_SIGN_AGREEMENT})",
            result,
            forward_err,
        )
    return result
