"""An ensemble of quality models attacked together: the photo must be rated low by every one.

Each member keeps its own preprocessing, network, threshold and target; the ensemble's input is
the RGB photo at its own resolution, and its output is one score per member.  The loss adds the
members' L2 losses, each in units of its own margin (target minus threshold), so that a BRISQUE
point and a NIQE point weigh what they mean to their own verdicts; a member already past its
target adds nothing.  A photo is protected when
every member rates it past its threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Victim, check_image
from .objectives import QualityRegressor


class QualityEnsemble(Victim):
    """Quality regressors fooled together (outputs: (B, members) scores).

    Example:
        >>> ensemble = QualityEnsemble([load_victim("brisque"), load_victim("niqe")])
        >>> ensemble.name
        'brisque+niqe'
    """

    kind = "regressor"

    def __init__(self, members: Sequence[Victim]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two quality models")
        for m in members:
            if not isinstance(m, QualityRegressor):
                raise ValueError(f"an ensemble combines quality models; {m.name!r} is a {m.kind}")
        self.members = nn.ModuleList(members)
        self.name = "+".join(m.name for m in members)
        # Autograd can run the ensemble's network only if it can run every member's.
        self.exportable = all(m.exportable for m in members)
        readings: dict[str, None] = {}
        for m in members:
            readings.update(dict.fromkeys(m.deployment_readings))
        # Every reading hands the RGB view on; each member then reads it its own way.
        self.deployment_readings = tuple(readings)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def preprocess(self, image: Tensor) -> Tensor:
        check_image(image)
        return image

    def normalise(self, view: Tensor) -> Tensor:
        return view

    def member_inputs(self, member: Victim, batch: Tensor) -> Tensor:
        """A member's network input for a (B, 3, H, W) batch of ensemble inputs."""
        return torch.stack([member.preprocess(image) for image in batch])

    def network(self, batch: Tensor) -> Tensor:
        return torch.stack([m.network(self.member_inputs(m, batch)).float() for m in self.members], 1)

    def _column(self, name: str, like: Tensor) -> Tensor:
        return like.new_tensor([float(getattr(m, name)) for m in self.members])

    def reference(self, clean: Tensor, clean_jpeg: Tensor) -> Tensor:
        return self._column("target", clean_jpeg.float()).expand(clean_jpeg.shape[0], -1).clone()

    def push_weights(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(B, members) loss weights: one over each member's squared margin, and 0 for a member
        already past its target (its L2 term alone would pull it back while the others are
        pushed)."""
        margin = self._column("target", targets) - self._column("threshold", targets)
        done = self._each("past_target", outputs.detach(), targets)
        return (1 / margin**2).expand_as(targets).masked_fill(done, 0)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return ((outputs.float() - targets) ** 2 * self.push_weights(outputs, targets)).sum(1)

    def _each(self, method: str, outputs: Tensor, targets: Tensor, *args: float) -> Tensor:
        """(B, members) of a member method applied column by column."""
        return torch.stack(
            [getattr(m, method)(outputs[:, k], targets[:, k], *args) for k, m in enumerate(self.members)], 1
        )

    def margin(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The worst member's margin (positive: that member is not fooled yet)."""
        return self._each("margin", outputs, targets).amax(1)

    def is_protected(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self._each("is_protected", outputs, targets).all(1)

    def past_target(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self._each("past_target", outputs, targets).all(1)

    def clear_by(self, outputs: Tensor, targets: Tensor, fraction: float) -> Tensor:
        return self._each("clear_by", outputs, targets, fraction).all(1)

    def scale_margin(self, scale: float) -> None:
        for m in self.members:
            m.scale_margin(scale)

    def describe(self, outputs: Tensor) -> list[str | float]:
        return [
            " ".join(f"{m.name}={float(v):.3f}" for m, v in zip(self.members, row, strict=True))
            for row in outputs.view(outputs.shape[0], -1)
        ]
