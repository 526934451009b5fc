"""Training the amortised protector (:mod:`camo_engine.amortised`) against one victim, on CPU.

Each step draws a batch of random square crops (with random horizontal flips) from the training
photos, deterministically from the seed.  The loss is the victim's own attack loss on the net's
output, as the I-FGSM loop minimises it, plus ``recon_weight`` times an L1/L2 term to the input
(or to ``enhancer(input)`` when an enhancer is given).  With ``jpeg_quality`` set, the output
goes through kornia's differentiable JPEG before the victim sees it, so the learned perturbation
is one that survives re-encoding (verdicts are always taken after real JPEG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from torch import Tensor, nn

from ..victims.base import Victim, check_image
from ..victims.geometry import resize
from .net import DEFAULT_WIDTHS, AmortisedNet

StepLog = Callable[[int, dict[str, float]], None]
MAX_ZOOM = 1.5


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; stored in the checkpoint's meta."""

    eps: float = 8 / 255
    steps: int = 300  # optimiser steps, each on a fresh batch of random crops
    batch_size: int = 8
    crop: int = 224  # side of the square training crops: the net's working side
    lr: float = 1e-3
    seed: int = 0
    recon_weight: float = 0.0
    recon: Literal["l1", "l2"] = "l1"
    jpeg_quality: int | None = 90  # differentiable JPEG in the loop; None trains on the float output
    widths: tuple[int, ...] = DEFAULT_WIDTHS

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.crop < 8:
            raise ValueError("steps must be >= 0, batch_size >= 1 and crop >= 8")
        if self.lr <= 0 or self.recon_weight < 0:
            raise ValueError("lr must be positive and recon_weight non-negative")
        if self.recon not in ("l1", "l2"):
            raise ValueError(f"recon must be l1 or l2, got {self.recon!r}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100 or None, got {self.jpeg_quality}")


def random_crops(photos: Sequence[Tensor], count: int, crop: int, gen: torch.Generator) -> Tensor:
    """(count, 3, crop, crop) training crops, as the net sees photos in protection.

    In protection a photo is brought to short side ``crop`` (the net's working side); here a
    random square of 1/MAX_ZOOM to all of a random photo's short side, at a random place, is
    resized to ``crop`` and flipped with probability 1/2: the same scale, some zoom jitter.
    """
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        h, w = photo.shape[1:]
        zoom = 1 + (MAX_ZOOM - 1) * float(torch.rand((), generator=gen))
        side = max(1, round(min(h, w) / zoom))
        y = int(torch.randint(h - side + 1, (1,), generator=gen))
        x = int(torch.randint(w - side + 1, (1,), generator=gen))
        patch = resize(photo[:, y : y + side, x : x + side], (crop, crop))
        if bool(torch.rand((), generator=gen) < 0.5):
            patch = patch.flip(-1)
        crops.append(patch)
    return torch.stack(crops)


def clean_targets(victim: Victim, batch: Tensor) -> Tensor:
    """The attack targets for clean crops, as the I-FGSM loop builds them."""
    with torch.no_grad():
        clean = victim(batch).float()
    return victim.reference(clean, clean)


def attack_loss(victim: Victim, protected: Tensor, targets: Tensor, jpeg_quality: int | None) -> Tensor:
    """Per-image victim loss (B,) on the protected batch, after differentiable JPEG if asked."""
    if jpeg_quality is not None:
        protected = jpeg_codec_differentiable(protected, torch.tensor([float(jpeg_quality)]))
    return victim.loss(victim(protected).float(), targets)


def new_amortised(config: TrainConfig, enhance: bool = False) -> AmortisedNet:
    """The untrained net for ``config``, initialised from its seed (the caller's RNG untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        return AmortisedNet(config.eps, config.widths, enhance, config.crop)


def train_protector(
    victim: Victim,
    photos: Sequence[Tensor],
    config: TrainConfig = TrainConfig(),
    *,
    enhance: nn.Module | None = None,
    on_step: StepLog | None = None,
) -> AmortisedNet:
    """Train a :class:`AmortisedNet` against ``victim`` on random crops of (3, H, W) ``photos``.

    With ``enhance`` the net gets its enhancement head and the reconstruction term pulls its
    output toward ``enhance(crop)``; then ``recon_weight`` must be positive.  ``on_step`` gets
    the step number and its losses (for progress display).
    """
    if not photos:
        raise ValueError("no training photos")
    if enhance is not None and config.recon_weight <= 0:
        raise ValueError("training toward an enhancer needs a positive recon_weight")
    net = new_amortised(config, enhance is not None)
    victim.eval().requires_grad_(False)
    for i, photo in enumerate(photos):
        check_image(photo, f"photo {i}")
    gen = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    distance = F.l1_loss if config.recon == "l1" else F.mse_loss
    net.train()
    for step in range(config.steps):
        batch = random_crops(photos, config.batch_size, config.crop, gen)
        targets = clean_targets(victim, batch)
        with torch.no_grad():
            wanted = batch if enhance is None else enhance(batch).clamp(0, 1)
        protected = net(batch)
        fool = attack_loss(victim, protected, targets, config.jpeg_quality).mean()
        recon = distance(protected, wanted)
        loss = fool + config.recon_weight * recon
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if on_step is not None:
            losses = {"loss": loss, "attack": fool, "recon": recon}
            on_step(step, {name: float(value.detach()) for name, value in losses.items()})
    return net.eval()
