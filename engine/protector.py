"""The library API: load a victim once, protect many photos, in-process and thread-safe.

>>> from camo_engine import Protector
>>> protector = Protector("efficientnet-lite0")
>>> [result] = protector.protect([rgb])          # (H, W, 3) uint8
>>> result.protected, result.rgb                  # verdict after JPEG 90, protected pixels
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .amortised import AmortisedNet, amortised_for, amortised_starts
from .attack import IDLE, IFGSM, AttackConfig, AttackResult
from .attack.strength import strength as strength_preset
from .backends import GradientBackend, make_backend
from .enhance import parse_enhancers
from .io import jpeg
from .measure.fidelity import fidelity
from .threat import resolve_panel
from .victims import Victim, load_victim


@dataclass
class Protected:
    """One protected photo and its verdicts under every view of the panel: the one per-photo
    record (the report row is made from it)."""

    index: int
    rgb: np.ndarray  # (H, W, 3) uint8
    unattacked: np.ndarray  # (H, W, 3) uint8: the output without the attack (enhanced, if so)
    protected: bool  # protected under every view of the panel
    already: bool  # the original as it is was already judged so under every view
    alone: bool  # the channels (and enhancement) alone, without the attack, already did it
    win: bool  # protected, and neither of the above
    steps: int  # I-FGSM steps spent (finishing steps after an amortised net)
    method: str  # "i-fgsm", "protector" (its output as is) or "protector+i-fgsm"
    before: str | float  # victim's score / top-1 of the un-attacked output (headline view)
    after: str | float  # ... and of the protected photo
    seconds: float
    strength: str
    panel: str
    views: list[dict[str, Any]] = field(default_factory=list)  # per view: name and states
    fidelity: dict[str, float] = field(default_factory=dict)

    def report_fields(self) -> dict[str, Any]:
        """The report row's fields about the attack (the pipeline adds the file fields)."""
        failed = [v["view"] for v in self.views if not v["protected"]]
        return {
            "strength": self.strength,
            "panel": self.panel,
            "before": self.before,
            "after": self.after,
            "protected": self.protected,
            "already": self.already,
            "alone": self.alone,
            "win": self.win,
            "views_protected": f"{len(self.views) - len(failed)}/{len(self.views)}",
            "failed_views": " ".join(failed),
            "steps": self.steps,
            "method": self.method,
            **self.fidelity,
            "seconds": self.seconds,
            "views": self.views,
        }


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

    ``amortised`` (a checkpoint from ``camo-engine train-protector``, or a loaded
    :class:`~camo_engine.amortised.AmortisedNet`) protects each photo in one forward pass at
    its working size; its output is judged after JPEG like any other, and the photos it did
    not protect get up to ``finish_steps`` I-FGSM steps from there (0: the protector alone).
    The checkpoint must have been trained against this victim, at ``config.eps``.

    ``strength`` (``low``, ``medium`` — the default — or ``high``) picks the panel of views a
    photo must hold under, the margin, eps, alpha and step budget (:mod:`camo_engine.attack.strength`);
    ``config`` replaces the preset's attack settings (the report then names the strength
    ``custom``, and without a ``strength`` the victim keeps its default margin), and an explicit
    ``target``/``confidence`` replaces the margin.
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
        amortised: AmortisedNet | Path | str | None = None,
        finish_steps: int = 0,
        strength: str | None = None,
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
        preset = strength_preset(strength or "medium")
        self.strength = strength or ("medium" if config is None else "custom")
        self.config = config or preset.config
        if isinstance(victim, Victim):
            self.victim = victim
        else:
            self.victim = load_victim(victim, **victim_options)
            # A strength's margin, unless the caller set the victim's own (target, confidence) or
            # gave a config without a strength (then the victim's defaults stand).
            given = {k for k, v in victim_options.items() if v is not None}
            if not {"target", "confidence"} & given and (strength is not None or config is None):
                preset.apply_margin(self.victim)
        self.net = self._amortised_net(amortised, finish_steps)
        # With a protector, I-FGSM only finishes what it left: its budget is finish_steps.
        self.attack_config = (
            self.config if self.net is None else dataclasses.replace(self.config, steps=finish_steps)
        )
        self.backend = (
            backend
            if not isinstance(backend, str)
            else make_backend(backend, self.victim, **(backend_options or {}))
        )
        self.panel = resolve_panel(self.config.panel, self.victim.deployment_readings, self.config.jpeg_quality)

    def protect_iter(self, images: Iterable[np.ndarray]) -> Iterator[Protected]:
        """Protect a stream of (H, W, 3) uint8 photos; yields results as they finish.

        The stream is read lazily, so memory stays bounded by the batch, not the stream.  It
        may yield :data:`camo_engine.attack.IDLE` when it has nothing to add yet (a service
        waiting for requests): the photos in flight go on, and the stream is asked again
        after the next step.
        """

        def starts() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            for i, rgb in enumerate(images):
                if rgb is IDLE:
                    yield IDLE, IDLE, IDLE
                    continue
                original = as_image(rgb, i)
                centre = init = self._start(original)
                if self.net is not None:
                    [(centre, init)] = amortised_starts(self.net, [centre])
                yield centre, original, init

        # (centres, originals[, inits]): without a protector the attack starts at the centres.
        streams = itertools.tee(starts(), 2 if self.net is None else 3)
        attack = IFGSM(
            self.victim, self.backend, self.attack_config, self.enhancer if self.through else None, self.panel
        )
        results = attack.run(*(map(itemgetter(k), s) for k, s in enumerate(streams)))
        for result in results:
            yield self._describe(result)

    def protect(self, images: Iterable[np.ndarray]) -> list[Protected]:
        """Protect photos and return the results in input order."""
        return sorted(self.protect_iter(images), key=lambda p: p.index)

    @property
    def enhances(self) -> bool:
        """Whether outputs are enhanced (by an enhancer, or by the protector's own head)."""
        return self.enhancer is not None or (self.net is not None and self.net.enhance)

    def _amortised_net(
        self, amortised: AmortisedNet | Path | str | None, finish_steps: int
    ) -> AmortisedNet | None:
        if amortised is None:
            if finish_steps:
                raise ValueError("finish_steps needs a protector to finish from")
            return None
        if self.through:
            raise ValueError(
                "a protector's output is the protected photo: it cannot attack through an enhancer"
            )
        net = amortised_for(amortised, self.victim.name, self.config.eps)
        if net.enhance and self.enhancer is not None:
            raise ValueError("this protector enhances with its own head: give no enhancer with it")
        return net

    def _start(self, original: torch.Tensor) -> torch.Tensor:
        """The attack's start point: the enhanced photo, unless attacking through the enhancer."""
        if self.enhancer is None or self.through:
            return original
        with torch.no_grad():
            return self.enhancer(original[None])[0].clamp(0, 1)

    def _describe(self, result: AttackResult) -> Protected:
        describe = self.victim.describe
        states = result.states
        return Protected(
            index=result.index,
            rgb=result.rgb,
            unattacked=result.unattacked,
            **states,
            steps=result.steps,
            method=self._method(result.steps),
            before=describe(result.before.outputs)[0],
            after=describe(result.after.outputs)[0],
            seconds=round(result.seconds, 4),
            strength=self.strength,
            panel=self.panel.name,
            views=[
                {
                    "view": v.view,
                    "protected": v.protected,
                    "alone": v.alone,
                    "already": v.already,
                    "before": describe(v.before)[0],
                    "after": describe(v.after)[0],
                }
                for v in result.views
            ],
            # Against the un-attacked output: the cost of the perturbation, not of enhancement.
            fidelity=fidelity(result.unattacked, result.rgb),
        )

    def _method(self, steps: int) -> str:
        """Which route protected (or tried to protect) a photo."""
        if self.net is None:
            return "i-fgsm"
        return "protector+i-fgsm" if steps else "protector"
