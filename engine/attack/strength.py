"""``--strength low|medium|high``: presets of the panel, margin, eps, alpha, step budget and
views per step (like Fawkes's modes).  Their measured robustness, PSNR and speed are in
docs/strength.md."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..victims.base import Victim
from .config import AttackConfig

STRENGTHS = ("low", "medium", "high")


@dataclass(frozen=True)
class Strength:
    """One preset: the attack's settings and how far past the threshold it pushes."""

    name: str
    config: AttackConfig
    # The victim's margin (a regressor's target beyond its threshold, a classifier's logit
    # confidence) as a multiple of the victim's default, per victim kind.
    margin_scale: dict[str, float]

    def apply_margin(self, victim: Victim) -> Victim:
        """Scale ``victim``'s margin (in place) to this preset's, for its kind; returns it."""
        victim.scale_margin(self.margin_scale.get(victim.kind, 1.0))
        return victim


PRESETS: dict[str, Strength] = {
    # Today's engine before panels: its own view after JPEG, sign steps, no margin to spare.
    "low": Strength(
        "low",
        AttackConfig(panel="low", views_per_step=1, jitter=0, step="sign", check_every=1, stop_margin=0.0,
                     straight_through=True),
        {"regressor": 1.0, "classifier": 1.0},
    ),
    # The engine's defaults.  BRISQUE's target 60 (threshold 50), a classifier's margin 5 logits.
    # 60 steps, not 40: BRISQUE's hardest photos need them (94% -> 97% of the strength bench's
    # 32 under every view, the same median steps and PSNR).  The panel verdict every step, not
    # every 2: the same time, 0.6-0.8 dB more PSNR (photos leave as soon as they are clear;
    # docs/strength.md).
    "medium": Strength("medium", AttackConfig(steps=60, check_every=1), {"regressor": 0.5, "classifier": 2.5}),
    # 80 steps: at 60, 88% of the strength bench's 32 held every view (ninth session's code),
    # 91% at 80, the same median steps and PSNR (docs/strength.md).
    "high": Strength(
        "high",
        AttackConfig(panel="high", views_per_step=6, jitter=6, steps=80),
        {"regressor": 0.75, "classifier": 4.0},
    ),
}


def strength(name: str) -> Strength:
    """The preset called ``name``; an unknown name is an error listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown strength {name!r}; known: {', '.join(STRENGTHS)}")
    return PRESETS[name]


def strength_config(name: str, **overrides: Any) -> AttackConfig:
    """The preset's :class:`AttackConfig` with ``overrides`` (``None`` values ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(strength(name).config, **given)
