"""The two attack objectives: a quality regressor pushed past a threshold, and a classifier
whose protected classes are pushed out of the top-k.  Concrete victims inherit one of them
and only add their preprocessing and network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Victim

# How ImageNet-style classifiers are deployed: the whole frame squashed to the input size, or
# torchvision's short-side resize + centre crop, with the two common kernels; and the engine's
# own view (antialiased central crop).
CLASSIFIER_READINGS = (
    "own",
    "squash:224:bilinear",
    "squash:224:bicubic",
    "crop:224:bilinear",
    "crop:224:bicubic",
)


class QualityRegressor(Victim):
    """A no-reference quality model to be made to rate a photo as low quality.

    ``higher_is_worse`` is True for BRISQUE-like scores and False for KonCept/NIMA-like ones.
    The photo counts as protected once its score is past ``threshold``; the loss is the paper's
    L2 distance to ``target``, which lies beyond the threshold so that the attack overshoots
    enough to survive JPEG re-encoding.
    """

    kind = "regressor"

    def __init__(self, threshold: float, target: float, higher_is_worse: bool) -> None:
        super().__init__()
        if higher_is_worse and target < threshold or not higher_is_worse and target > threshold:
            raise ValueError(
                f"target {target} must lie beyond threshold {threshold} on the low-quality side"
            )
        self.threshold = float(threshold)
        self.target = float(target)
        self.higher_is_worse = higher_is_worse

    def reference(self, clean: Tensor, clean_jpeg: Tensor) -> Tensor:
        return torch.full_like(clean_jpeg.float(), self.target)

    def scale_margin(self, scale: float) -> None:
        """Move the target ``scale`` times as far beyond the threshold (a strength preset)."""
        self.target = self.threshold + scale * (self.target - self.threshold)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.float() - targets) ** 2

    def margin(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """How far the score is from passing the threshold, in units of the threshold's distance
        to the target score: positive means not yet protected, ``-1`` means at the target.

        The unit keeps the margin O(1), as a classifier's logit margin is, so that tools which
        see the victim as logits ``[margin, 0]`` (the bench's contenders) don't saturate.
        """
        return (self.threshold - outputs.float()) / (targets - self.threshold)

    def is_protected(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.higher_is_worse:
            return outputs >= self.threshold
        return outputs <= self.threshold

    def past_target(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.higher_is_worse:
            return outputs >= targets
        return outputs <= targets

    def clear_by(self, outputs: Tensor, targets: Tensor, fraction: float) -> Tensor:
        edge = self.threshold + fraction * (targets - self.threshold)
        return outputs >= edge if self.higher_is_worse else outputs <= edge

    def describe(self, outputs: Tensor) -> list[str | float]:
        return [round(float(v), 3) for v in outputs]


class NetworkRegressor(QualityRegressor):
    """A quality regressor that is one torch network fed at one fixed ``input_size`` (h, w)."""

    input_size: tuple[int, int]

    def __init__(self, model: nn.Module, threshold: float, target: float, higher_is_worse: bool) -> None:
        super().__init__(threshold, target, higher_is_worse)
        self.model = model.eval().requires_grad_(False)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return self.input_size

    def network(self, batch: Tensor) -> Tensor:
        return self.model(batch)


class Classifier(Victim):
    """A classifier whose verdict on a photo must change.

    Untargeted: the top-1 of the original *and* the top-1 of its JPEG re-encode (they differ on
    a share of photos: JPEG alone is no win) must all leave the top-``top_k``.
    Targeted: ``target_class`` must become the top-1.

    Both are one margin: ``max(z[P]) - kth_largest(z[not P])`` where P is the mask of classes to
    push down.  The photo is protected when that margin is negative; the loss is the margin
    clamped at ``-confidence`` so the attack overshoots a little for JPEG robustness.
    """

    kind = "classifier"

    def __init__(
        self,
        categories: Sequence[str],
        top_k: int = 1,
        target_class: int | None = None,
        confidence: float = 2.0,
    ) -> None:
        super().__init__()
        n = len(categories)
        if not 1 <= top_k < n:
            raise ValueError(f"top_k must be between 1 and {n - 1}, got {top_k}")
        if target_class is not None and not 0 <= target_class < n:
            raise ValueError(f"target_class must be between 0 and {n - 1}, got {target_class}")
        self.categories = list(categories)
        self.top_k = 1 if target_class is not None else top_k
        self.target_class = target_class
        self.confidence = float(confidence)

    def scale_margin(self, scale: float) -> None:
        """Ask for ``scale`` times the logit margin (a strength preset)."""
        self.confidence *= scale

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def reference(self, clean: Tensor, clean_jpeg: Tensor) -> Tensor:
        mask = torch.zeros_like(clean, dtype=torch.float32)
        if self.target_class is not None:
            mask.fill_(1.0)
            mask[:, self.target_class] = 0.0
        else:
            rows = torch.arange(clean.shape[0])
            mask[rows, clean.argmax(1)] = 1.0
            mask[rows, clean_jpeg.argmax(1)] = 1.0
        return mask

    def margin(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """``max(z[P]) - kth_largest(z[not P])``: negative means protected."""
        z = outputs.float()
        low = torch.finfo(z.dtype).min
        pushed = z.masked_fill(targets < 0.5, low).amax(1)
        others = z.masked_fill(targets > 0.5, low).topk(self.top_k, dim=1).values[:, -1]
        return pushed - others

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.margin(outputs, targets).clamp_min(-self.confidence)

    def is_protected(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.margin(outputs, targets) < 0

    def past_target(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.margin(outputs, targets) <= -self.confidence

    def clear_by(self, outputs: Tensor, targets: Tensor, fraction: float) -> Tensor:
        return self.margin(outputs, targets) < -fraction * self.confidence

    def describe(self, outputs: Tensor) -> list[str | float]:
        return [self.categories[int(i)] for i in outputs.argmax(1)]
