"""The attack's parameters: one frozen dataclass, checked on construction."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..threat import Panel


@dataclass(frozen=True)
class AttackConfig:
    """I-FGSM parameters (the image range is [0, 1])."""

    eps: float = 8 / 255
    alpha: float = 1 / 255
    steps: int = 40
    jpeg_quality: int = 90
    batch_size: int = 8
    pixel_budget: int = 50_000_000
    random_start: bool = False
    seed: int = 0
    # MI-FGSM decay (0: plain I-FGSM); why 0.5: benchmarks/NOTES.md, "momentum".
    momentum: float = 0.5
    # Step schedule: the first step is ``alpha_start``, falling geometrically to ``alpha``
    # over the first quarter of the budget (None: ``alpha`` throughout).
    alpha_start: float | None = None
    # Gaussian blur (sigma in pixels, 0: off) of the gradient before it sets the step, as in
    # TI-FGSM: a smoother perturbation is less of what JPEG removes (benchmarks/NOTES.md).
    blur_sigma: float = 1.0
    # The views a photo must hold under: a built-in panel (low, medium, high), a .toml/.json
    # file, or a Panel (camo_engine.threat).
    panel: str | Panel = "medium"
    # Views sampled for each step's gradient (expectation over transformations), and random
    # off-panel channels (a downscale by 0.4-1 then JPEG 65-95) added to each step's sample so
    # that the perturbation holds beyond the panel's exact scales.
    views_per_step: int = 4
    jitter: int = 2
    # "sign": the I-FGSM sign step of alpha; "rms": the direction scaled to an RMS of alpha
    # per pixel, clipped at 2 alpha (the same energy, spent where the gradient is).
    step: str = "rms"
    # The real panel verdict every check_every steps (and at the last step).
    check_every: int = 2
    # A photo leaves once every view is protected with this fraction of the victim's margin
    # to spare (0: just protected); the reported verdict is always the plain one.
    stop_margin: float = 0.5
    # True: each view's channel (JPEG, resize) is the identity in the gradient (straight-through),
    # as the engine was before panels: for `low`, whose one view is JPEG at the written quality,
    # the stand-in's backward costs more than it adds (benchmarks/NOTES.md, "low").
    straight_through: bool = False
    # The photo is written as JPEG at jpeg_quality (False: losslessly): every view starts from
    # the pixels the written file decodes to, which is what gets uploaded.
    written_jpeg: bool = True

    @property
    def written(self) -> str:
        """The channel from the protected pixels to the written file, as a channel spelling."""
        return f"jpeg:{self.jpeg_quality}" if self.written_jpeg else "none"

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {self.eps}")
        if not 0 < self.alpha <= self.eps:
            raise ValueError(f"alpha must be in (0, eps], got {self.alpha}")
        if self.alpha_start is not None and not self.alpha <= self.alpha_start <= self.eps:
            raise ValueError(f"alpha_start must be in [alpha, eps], got {self.alpha_start}")
        if self.momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {self.momentum}")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.views_per_step < 1 or self.check_every < 1 or self.jitter < 0:
            raise ValueError("views_per_step and check_every must be >= 1, jitter >= 0")
        if self.step not in ("sign", "rms"):
            raise ValueError(f"step must be sign or rms, got {self.step!r}")
        if not 0 <= self.stop_margin <= 1:
            raise ValueError(f"stop_margin must be in [0, 1], got {self.stop_margin}")
        if self.batch_size < 1 or self.pixel_budget < 1:
            raise ValueError("batch_size and pixel_budget must be positive")

    def step_size(self, step: int) -> float:
        """The sign-step size of step ``step`` (0-based)."""
        if self.alpha_start is None:
            return self.alpha
        ramp = max(1, self.steps // 4)
        return self.alpha_start * (self.alpha / self.alpha_start) ** (min(step, ramp) / ramp)


def parse_level(text: str) -> float:
    """A pixel-range amount written ``0.03`` or ``8/255``; ValueError for anything else."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a number or a fraction like 8/255") from None
