"""The one narrow interface between the attack loop and whatever computes gradients.

A backend takes a batch in the victim's input space and the per-image loss targets, and
returns the victim's outputs, the per-image attack loss and d(loss)/d(input).  The attack
loop never learns which backend it is talking to.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor


class Step(NamedTuple):
    """What one forward + input-gradient pass returns for a batch."""

    outputs: Tensor  # (B,) scores or (B, classes) logits, float32
    loss: Tensor  # (B,) per-image attack loss
    grad: Tensor  # d loss / d input, same shape as the input batch


@runtime_checkable
class GradientBackend(Protocol):
    """Runs a victim's network: forward only, or forward plus input-gradient."""

    name: str

    def outputs(self, batch: Tensor) -> Tensor:
        """Victim outputs for a preprocessed batch (no gradient)."""
        ...

    def step(self, batch: Tensor, targets: Tensor) -> Step:
        """Outputs, per-image loss and input-gradient for a preprocessed batch."""
        ...
