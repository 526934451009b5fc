"""The victim interface: what the attack loop needs to know about a model it attacks.

A victim is split in two halves so that backends can be swapped:

* ``preprocess`` (always torch, differentiable) maps one full-resolution RGB image in [0, 1]
  to the victim's fixed input geometry.  The perturbation lives at full resolution and its
  gradient flows back through this resize/crop.
* ``network`` maps a batch of preprocessed inputs to outputs (scores or logits).  This is the
  part a backend runs (torch autograd, or an exported ONNX gradient graph).

The attack objective (``loss``) and the verdict (``is_protected``) are defined on the outputs,
so a backend only has to return ``outputs, loss, d loss / d input`` for a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

VictimKind = Literal["regressor", "classifier"]


@dataclass(frozen=True)
class VictimInfo:
    """What ``camo-engine victims`` prints about a victim."""

    name: str
    task: str
    needs: str
    weights: str


def check_image(x: Tensor, name: str = "image") -> None:
    """Raise a clear error unless ``x`` is a (3, H, W) float image."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must have shape (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1], got {x.dtype}")


class Victim(nn.Module, ABC):
    """A model the engine attacks.  Subclasses set ``name`` and ``kind``."""

    name: str = "victim"
    kind: VictimKind = "classifier"
    # Whether the network is a torch graph that autograd (and the ONNX exporter) can trace.
    exportable: bool = True
    # How deployments of this model read a photo (camo_engine.threat.readings spellings): the
    # readings that the medium and high panels pair with every channel.
    deployment_readings: tuple[str, ...] = ("own",)

    @abstractmethod
    def geometry(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) that ``preprocess`` produces for a full-resolution image of this size.

        Images with equal geometry can share a batch in victim space.
        """

    @abstractmethod
    def preprocess(self, image: Tensor) -> Tensor:
        """Differentiable map from one (3, H, W) RGB image in [0, 1] to the network input (C, h, w)."""

    def normalise(self, view: Tensor) -> Tensor:
        """Network input (C, h, w) from a (3, h, w) RGB view in [0, 1] that a deployment's
        reading prepared (resized, cropped): the model's own normalisation, nothing else."""
        raise NotImplementedError(
            f"victim {self.name!r} declares no normalisation: only its own reading ('own') applies"
        )

    @abstractmethod
    def network(self, batch: Tensor) -> Tensor:
        """Outputs for a batch of preprocessed inputs: (B,) scores or (B, classes) logits."""

    @abstractmethod
    def reference(self, clean: Tensor, clean_jpeg: Tensor) -> Tensor:
        """Per-image attack target built from the outputs on the original and on its JPEG re-encode.

        Regressors: (B,) target score.  Classifiers: (B, classes) 0/1 mask of the classes that
        must leave the top-k (untargeted) or of every class but the wanted one (targeted).
        """

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-image attack loss (B,), to be *minimised* by the attack."""

    @abstractmethod
    def is_protected(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-image bool (B,): does the victim's output count as protected?"""

    def scale_margin(self, scale: float) -> None:
        """Push ``scale`` times as far past the verdict's threshold (no-op for victims without
        a margin)."""

    def clear_by(self, outputs: Tensor, targets: Tensor, fraction: float) -> Tensor:
        """Per-image bool (B,): protected with ``fraction`` of the margin to spare (0: just
        protected).  The attack keeps pushing a photo until every view is clear by its stop
        margin, so that channels outside the panel find some slack."""
        return self.is_protected(outputs, targets)

    def past_target(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-image bool (B,): already past the attack's target with its margin, so that a
        view there needs no more push (its gradient is left out of the step)."""
        return torch.zeros(outputs.shape[0], dtype=torch.bool)

    @abstractmethod
    def describe(self, outputs: Tensor) -> list[str | float]:
        """A per-image human-readable value for reports: a score, or a top-1 label."""

    def forward(self, images: Tensor) -> Tensor:
        """Outputs for a (B, 3, H, W) batch of same-size full-resolution images."""
        return self.network(torch.stack([self.preprocess(im) for im in images]))
