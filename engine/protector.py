"""The library API: load a victim once, protect many photos, in-process and thread-safe.

>>> from camo_engine import Protector
>>> protector = Protector("efficientnet-lite0")
>>> [result] = protector.protect([rgb])          # (H, W, 3) uint8
>>> result.protected, result.rgb                  # verdict after JPEG 90, protected pixels
"""

from __future__ import annotations

import itertools

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import jpeg
from .attack import AttackConfig, AttackResult, IFGSM
from .backends import GradientBackend, make_backend
from .enhance import parse_enhancers
from .metrics import fidelity
from .victims import Victim, load_victim


@dataclass
class Protected:
    """One protected photo and its verdicts (all taken after JPEG re-encoding)."""

    index: int
    rgb: np.ndarray  # (H, W, 3) uint8
    unattacked: np.ndarray  # (H, W, 3) uint8: the output without the attack (enhanced, if so)
    protected: bool  # the victim's verdict on the re-encoded output
    jpeg_alone: bool  # re-encoding alone already changed the verdict on the original
    steps: int
    before: str | float  # victim's score / top-1 on the re-encoded original
    after: str | float  # ... and on the re-encoded protected photo
    seconds: float
    fidelity: dict[str, float] = field(default_factory=dict)

    @property
    def win(self) -> bool:
        """Protected, and not merely by the re-encoding itself."""
        return self.protected and not self.jpeg_alone


def as_image(rgb: np.ndarray, index: int) -> torch.Tensor:
    """Validate an (H, W, 3) uint8 array and convert it for the attack."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}"
        raise ValueError(f"image {index}: expected an (H, W, 3) uint8 array, got {got}")
    return jpeg.to_float(rgb)


class Protector:
    """Protects photos against one victim.

    The victim and backend are built once in the constructor and shared by every call;
    calls do not mutate shared state, so one instance can serve concurrent requests.

    ``enhance`` (names like ``"pillow,dhe"`` or a module) makes the photo more appealing:
    by default the photo is enhanced first and the attack's eps-ball is around the enhanced
    photo; with ``through=True`` every attack step back-propagates through the (differentiable)
    enhancer and perturbs the *input*, and the output is the enhancer applied to it.
    Verdicts are always against the original photo.
    """

    def __init__(
        self,
        victim: str | Victim = "brisque",
        *,
        config: AttackConfig | None = None,
        backend: str | GradientBackend = "torch",
        backend_options: dict[str, Any] | None = None,
        enhance: str | nn.Module | None = None,
        through: bool = False,
        **victim_options: Any,
    ) -> None:
        self.enhancer = parse_enhancers(enhance) if isinstance(enhance, str) else enhance
        if through and self.enhancer is None:
            raise ValueError("through=True needs an enhancer to attack through")
        if through and not getattr(self.enhancer, "differentiable", True):
            raise ValueError(
                f"cannot attack through {enhance!r}: it is not differentiable; "
                "drop --through to enhance first and attack the enhanced photo"
            )
        self.through = through
        self.victim = victim if isinstance(victim, Victim) else load_victim(victim, **victim_options)
        self.config = config or AttackConfig()
        self.backend = (
            backend
            if not isinstance(backend, str)
            else make_backend(backend, self.victim, **(backend_options or {}))
        )

    def protect_iter(self, images: Iterable[np.ndarray]) -> Iterator[Protected]:
        """Protect a stream of (H, W, 3) uint8 photos; yields results as they finish.

        The stream is read lazily, so memory stays bounded by the batch, not the stream.
        """

        def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i, rgb in enumerate(images):
                original = as_image(rgb, i)
                yield self._start(original), original

        starts, originals = itertools.tee(pairs())
        attack = IFGSM(
            self.victim, self.backend, self.config, self.enhancer if self.through else None
        )
        results = attack.run((s for s, _ in starts), (o for _, o in originals))
        for result in results:
            yield self._describe(result)

    def protect(self, images: Iterable[np.ndarray]) -> list[Protected]:
        """Protect photos and return the results in input order."""
        return sorted(self.protect_iter(images), key=lambda p: p.index)

    def _start(self, original: torch.Tensor) -> torch.Tensor:
        """The attack's start point: the enhanced photo, unless attacking through the enhancer."""
        if self.enhancer is None or self.through:
            return original
        with torch.no_grad():
            return self.enhancer(original[None])[0].clamp(0, 1)

    def _describe(self, result: AttackResult) -> Protected:
        before = self.victim.describe(result.before.outputs)[0]
        after = self.victim.describe(result.after.outputs)[0]
        return Protected(
            index=result.index,
            rgb=result.rgb,
            unattacked=result.unattacked,
            protected=result.protected,
            jpeg_alone=result.jpeg_alone,
            steps=result.steps,
            before=before,
            after=after,
            seconds=round(result.seconds, 4),
            # Against the un-attacked output: the cost of the perturbation, not of enhancement.
            fidelity=fidelity(result.unattacked, result.rgb),
        )
