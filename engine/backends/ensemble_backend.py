"""A backend for a quality ensemble: one backend per member, gradients added at the photo.

Each member runs on its own backend (an ONNX-file member on onnxruntime, the others on the
backend asked for), behind the same narrow interface; the member's preprocessing stays in torch
autograd, which carries the member's input gradient back to the photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..victims.ensemble import QualityEnsemble
from .base import GradientBackend, Step


class EnsembleBackend:
    """Runs a :class:`QualityEnsemble` member by member."""

    def __init__(self, ensemble: QualityEnsemble, backends: Sequence[GradientBackend]) -> None:
        if len(backends) != len(ensemble.members):
            raise ValueError("one backend per ensemble member")
        self.ensemble = ensemble
        self.backends = list(backends)
        self.name = "+".join(dict.fromkeys(b.name for b in backends))

    def outputs(self, batch: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.stack(
                [
                    b.outputs(self.ensemble.member_inputs(m, batch))
                    for m, b in zip(self.ensemble.members, self.backends, strict=True)
                ],
                1,
            )

    def step(self, batch: Tensor, targets: Tensor) -> Step:
        batch = batch.detach().requires_grad_(True)
        inputs, steps = [], []
        for k, (member, backend) in enumerate(zip(self.ensemble.members, self.backends, strict=True)):
            with torch.enable_grad():
                inputs.append(self.ensemble.member_inputs(member, batch))
            steps.append(backend.step(inputs[-1].detach(), targets[:, k]))
        outputs = torch.stack([s.outputs for s in steps], 1)
        weights = self.ensemble.push_weights(outputs, targets)
        # The members' input gradients, weighted as QualityEnsemble.loss weighs their losses,
        # carried back through their preprocessing in one backward pass.
        grads = [s.grad * weights[:, k].view(-1, *[1] * (s.grad.ndim - 1)) for k, s in enumerate(steps)]
        (grad,) = torch.autograd.grad(inputs, batch, grads)
        loss = (torch.stack([s.loss for s in steps], 1) * weights).sum(1)
        return Step(outputs, loss, grad)
