"""The one judge: what a victim says of a photo as it will be seen, against its original.

A *condition* is what a platform may do to a shared photo (nothing, a JPEG re-encode, a
downscale).  A candidate counts as protected under a condition when ``victim.is_protected``
holds against ``victim.reference(clean, seen)``: ``clean`` are the victim's outputs on the
original as it is, ``seen`` on the original under the same condition.  The share where the
condition alone changes the verdict on the original is reported beside every rate.

The attack loop, ``evaluate`` and the benchmark harness all judge through this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..backends.base import GradientBackend
from ..io import jpeg
from ..victims.base import Victim

OUTPUT_BATCH = 16  # images per victim forward when judging a list of photos

T = TypeVar("T")


# -- conditions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """A transformation a shared photo may undergo, applied alike to original and protected."""

    name: str  # machine name: none, jpeg90, resize0.5
    label: str  # what tables show
    apply: Callable[[np.ndarray], np.ndarray]
    jpeg_quality: int | None = None


def _identity(rgb: np.ndarray) -> np.ndarray:
    return rgb


def _downscale(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Antialiased (Lanczos) resize by ``factor``, as photo sites make their smaller copies."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


AS_FILES = Condition("none", "as files", _identity)


def jpeg_condition(quality: int) -> Condition:
    """A JPEG re-encode at ``quality`` with the engine's encoder settings."""
    return Condition(
        f"jpeg{quality}", f"JPEG {quality}", functools.partial(jpeg.roundtrip, quality=quality), quality
    )


def resize_condition(factor: float) -> Condition:
    """A downscale by ``factor`` (0 < factor <= 1)."""
    if not 0 < factor <= 1:
        raise ValueError(f"resize factor must be in (0, 1], got {factor}")
    return Condition(f"resize{factor:g}", f"resize x{factor:g}", functools.partial(_downscale, factor=factor))


def conditions(jpeg_qualities: Iterable[int], resize_factors: Iterable[float]) -> list[Condition]:
    """The photo as is, then each JPEG quality, then each downscale."""
    return [AS_FILES, *map(jpeg_condition, jpeg_qualities), *map(resize_condition, resize_factors)]


# -- victim outputs ----------------------------------------------------------------------------
def by_geometry(items: Iterable[T], victim: Victim, image: Callable[[T], Tensor]) -> dict[tuple[int, int], list[T]]:
    """Group items by the victim geometry of their (3, H, W) ``image(item)``, keeping order:
    items of one geometry can share a batch in victim space."""
    groups: dict[tuple[int, int], list[T]] = {}
    for item in items:
        x = image(item)
        groups.setdefault(victim.geometry(x.shape[1], x.shape[2]), []).append(item)
    return groups


def outputs_of(victim: Victim, backend: GradientBackend, images: Sequence[Tensor]) -> Tensor:
    """Victim outputs (no gradient) for full-resolution (3, H, W) images of any sizes, in order.

    Shape:
        - images: B tensors (3, H_i, W_i) in [0, 1].
        - output: (B,) scores or (B, classes) logits.
    """
    rows: dict[int, Tensor] = {}
    for indices in by_geometry(range(len(images)), victim, lambda i: images[i]).values():
        for start in range(0, len(indices), OUTPUT_BATCH):
            part = indices[start : start + OUTPUT_BATCH]
            with torch.no_grad():
                out = backend.outputs(torch.stack([victim.preprocess(images[i]) for i in part]))
            rows.update(zip(part, out))
    return torch.stack([rows[i] for i in range(len(images))])


def seen_outputs(
    victim: Victim, backend: GradientBackend, rgbs: Sequence[np.ndarray], condition: Condition
) -> Tensor:
    """Victim outputs on (H, W, 3) uint8 photos as ``condition`` delivers them."""
    return outputs_of(victim, backend, [jpeg.to_float(condition.apply(rgb)) for rgb in rgbs])


# -- verdicts ----------------------------------------------------------------------------------
@dataclass
class Verdict:
    """What the victim says of one photo as it will be seen."""

    outputs: Tensor  # victim outputs for this photo, shape (1, ...) or (1,)
    protected: bool


@dataclass
class Judged:
    """A victim's outputs on originals and candidates under one condition, and the verdicts."""

    clean: Tensor  # originals as they are (``seen`` for a victim that does not need them)
    seen: Tensor  # originals under the condition
    after: Tensor  # candidates under the condition
    protected: Tensor  # (B,) bool: the candidate is no longer judged as the original was
    alone: Tensor  # (B,) bool: the condition alone already changes the verdict on the original


def baseline(victim: Victim, clean: Tensor, seen: Tensor) -> tuple[Tensor, Tensor]:
    """The attack targets for originals with outputs ``clean`` (as they are) and ``seen`` (under
    the condition), and whether the condition alone already protects each original."""
    targets = victim.reference(clean, seen)
    alone = victim.is_protected(seen, victim.reference(clean, clean))
    return targets, alone


def judge(
    victim: Victim,
    backend: GradientBackend,
    originals: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    condition: Condition,
    clean: Tensor | None = None,
) -> Judged:
    """Judge (H, W, 3) uint8 candidates against their originals under ``condition``.

    ``clean`` (outputs on the untouched originals) may be passed in when judging one set of
    originals under several conditions.
    """
    seen = seen_outputs(victim, backend, originals, condition)
    if clean is None:
        # The same forward passes the attack loop pays for its own verdicts, no more.
        clean = (
            outputs_of(victim, backend, [jpeg.to_float(o) for o in originals])
            if victim.needs_clean_outputs
            else seen
        )
    after = seen_outputs(victim, backend, candidates, condition)
    targets, alone = baseline(victim, clean, seen)
    return Judged(clean, seen, after, victim.is_protected(after, targets), alone)


def verdicts(victim: Victim, outputs: Tensor, targets: Tensor) -> list[Verdict]:
    """One :class:`Verdict` per row of ``outputs``."""
    ok = victim.is_protected(outputs, targets)
    return [Verdict(outputs[row : row + 1], bool(ok[row])) for row in range(len(outputs))]


__all__: list[Any] = [
    "AS_FILES",
    "Condition",
    "Judged",
    "Verdict",
    "baseline",
    "by_geometry",
    "conditions",
    "judge",
    "jpeg_condition",
    "outputs_of",
    "resize_condition",
    "seen_outputs",
    "verdicts",
]
