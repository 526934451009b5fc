"""REFERENCE: the published method (HCMUS, MediaEval 2020 Pixel Privacy), written plainly.

This is the baseline ``camo-engine bench --compare`` measures the engine against, not engine
code.  It follows the paper as published:

* plain PyTorch I-FGSM, one photo at a time (batch size 1), fp32;
* a fixed number of steps (20), no early stop, no check after JPEG;
* loss: for a quality regressor the L2 distance of the score to the target score; for a
  classifier the logit of the true class (the clean top-1), which the attack *minimises*;
* the paper's budget: eps = alpha = 0.05 in [0, 1] pixel units.

Any camo-engine victim works: ``victim(batch)`` maps same-size [0, 1] photos to its outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAPER_EPS = 0.05
PAPER_ALPHA = 0.05
PAPER_STEPS = 20


def hcmus_loss(victim: torch.nn.Module, outputs: Tensor, goal: Tensor) -> Tensor:
    """The paper's loss: L2 to the target score (regressor), or the true-class logit (classifier)."""
    if victim.kind == "regressor":
        return ((outputs - goal) ** 2).sum()
    return outputs.gather(1, goal[:, None]).sum()


def attack_one(
    victim: torch.nn.Module,
    image: Tensor,
    eps: float = PAPER_EPS,
    alpha: float = PAPER_ALPHA,
    steps: int = PAPER_STEPS,
) -> Tensor:
    """I-FGSM on one (3, H, W) photo in [0, 1]; returns the adversarial photo (3, H, W)."""
    start = image.detach()[None]
    with torch.no_grad():
        clean = victim(start)
    if victim.kind == "regressor":
        goal = torch.full_like(clean, victim.target)
    else:
        goal = clean.argmax(1)
    x = start.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = hcmus_loss(victim, victim(x), goal)
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - alpha * grad.sign()  # descend the loss
        x = (start + (x - start).clamp(-eps, eps)).clamp(0, 1)
    return x[0].detach()
