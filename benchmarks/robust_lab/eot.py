"""EOT attack for the study: MI-FGSM over a sample of differentiable views, with a margin,
a perturbation over the whole frame, and early stop on the real panel every ``check_every`` steps.

Differentiable stand-ins (gradients only): kornia's ``jpeg_codec_differentiable`` for JPEG and
WebP, antialiased ``F.interpolate`` for the resizes, uint8 rounding with a straight-through
estimator before every codec, the readings' squash / short-side + centre crop.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d
from torch import Tensor

from camo_engine.victims.brisque import GRAY_WEIGHTS

from .views import (
    Channel,
    brisque_protected,
    classifier_protected,
    read_panel,
)


def ste_round(x: Tensor) -> Tensor:
    """uint8 rounding with an identity gradient."""
    return x + ((x * 255).round() / 255 - x).detach()


def diff_resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = "bicubic" if mode in ("bicubic", "lanczos") else "bilinear"
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).clamp(0, 1)


JITTER = Channel("jitter")


def random_channel(rng: random.Random) -> Channel:
    """A channel off the panel: scale U(0.4, 1), bilinear or bicubic, JPEG q U(65, 95), so that
    the perturbation does not fit the panel's few scales only."""
    scale = rng.uniform(0.4, 1.0)
    return Channel(
        "jitter",
        scale=1.0 if scale > 0.95 else scale,
        kernel=rng.choice(("bilinear", "bicubic")),
        fmt="JPEG",
        quality=rng.randint(65, 95),
    )


def diff_channel(x: Tensor, ch: Channel) -> Tensor:
    """Differentiable stand-in of a real channel on a (1, 3, H, W) batch."""
    x = diff_resize(x, ch.size(*x.shape[-2:]), ch.kernel)
    x = ste_round(x)
    if ch.fmt is not None:
        # WebP has no differentiable codec: a JPEG of the same nominal quality stands in.
        q = torch.tensor([float(ch.quality)])
        x = ste_round(jpeg_codec_differentiable(x, q))
    return x


def diff_brisque(model, x: Tensor, reading: str) -> Tensor:
    """BRISQUE score of a (1, 3, h, w) channel output under a reading."""
    if reading == "fixed512":
        return model.network(model.preprocess(x[0])[None])
    r, g, b = GRAY_WEIGHTS
    return model.network(r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3])


def diff_classifier_input(x: Tensor, reading: str) -> Tensor:
    """(3, 224, 224) lite0 input of a (1, 3, h, w) channel output under a reading."""
    kind, kernel = reading.split("_")
    h, w = x.shape[-2:]
    if kind == "squash":
        y = diff_resize(x, (224, 224), kernel)
    else:
        s = 256 / min(h, w)
        size = (256, round(w * s)) if h <= w else (round(h * s), 256)
        y = diff_resize(x, size, kernel)
        top, left = (y.shape[-2] - 224) // 2, (y.shape[-1] - 224) // 2
        y = y[..., top : top + 224, left : left + 224]
    return (ste_round(y)[0] * 255 - 127) / 128


@dataclass
class EOTConfig:
    eps: float = 8 / 255
    alpha: float = 1 / 255
    steps: int = 40
    views_per_step: int = 4  # 0: all
    margin: float = 10.0  # BRISQUE: target 50 + margin; classifier: logit margin kappa
    check_every: int = 1
    stop_margin: float = 0.0  # BRISQUE only: the real panel must be past 50 + stop_margin
    blur_sigma: float = 1.0
    momentum: float = 0.5
    seed: int = 0
    # "sign": I-FGSM's L-inf step; "rms": the direction scaled to an RMS of alpha (an L2 step of
    # the same energy as a sign step, spent where the gradient is, clipped to 2 alpha per pixel).
    step: str = "sign"
    jitter: int = 0  # random off-panel channels added to the views sampled for gradients


@dataclass
class Outcome:
    rgb: np.ndarray
    steps: int
    seconds: float
    check_seconds: float
    stopped: bool  # the real panel said protected before the budget ran out


def _to_uint8(x: Tensor) -> np.ndarray:
    return (x.detach()[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()


def attack(
    kind: str,
    model,
    readings,
    rgb: np.ndarray,
    channels: tuple[Channel, ...],
    cfg: EOTConfig,
    orig_panel: dict,
) -> Outcome:
    """Attack one uint8 photo; ``readings``/``channels`` define both the EOT views and the
    real panel checked for early stop; ``orig_panel`` is ``read_panel`` of the original."""
    rng = random.Random(cfg.seed)
    x0 = torch.from_numpy(np.array(rgb)).float().div(255).permute(2, 0, 1)[None].contiguous()
    pairs = [(ch, r) for ch in channels + (JITTER,) * cfg.jitter for r in readings.names]
    if kind == "classifier":
        # Per reading, every class the panel asks to leave the top-1 under that reading.
        masks = {r: torch.zeros(1000) for r in readings.names}
        for key, top in orig_panel.items():
            masks[key.split("/")[1]][top] = 1.0
    x = x0.clone()
    velocity = torch.zeros_like(x)
    start = time.perf_counter()
    check_time = 0.0
    steps = 0
    stopped = False
    for steps in range(1, cfg.steps + 1):
        x.requires_grad_(True)
        sample = pairs if cfg.views_per_step == 0 else rng.sample(pairs, min(cfg.views_per_step, len(pairs)))
        by_channel: dict[str, list[str]] = {}
        named: dict[str, Channel] = {}
        for i, (ch, r) in enumerate(sample):
            if ch is JITTER:  # each jitter view draws its own channel
                ch = Channel(f"jitter{i}", **{k: v for k, v in vars(random_channel(rng)).items() if k != "name"})
            by_channel.setdefault(ch.name, []).append(r)
            named[ch.name] = ch
        losses = []
        if kind == "brisque":
            for name, reads in by_channel.items():
                y = diff_channel(x, named[name])
                for r in reads:
                    score = diff_brisque(model, y, r).float()
                    losses.append(F.relu(50 + cfg.margin - score).sum())
        else:
            inputs, ms = [], []
            for name, reads in by_channel.items():
                y = diff_channel(x, named[name])
                for r in reads:
                    inputs.append(diff_classifier_input(y, r))
                    ms.append(masks[r])
            z = model.network(torch.stack(inputs))
            m = torch.stack(ms)
            low = torch.finfo(z.dtype).min
            pushed = z.masked_fill(m < 0.5, low).amax(1)
            others = z.masked_fill(m > 0.5, low).amax(1)
            losses.append((pushed - others).clamp_min(-cfg.margin).sum())
        loss = torch.stack(losses).sum() / len(sample)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            if cfg.blur_sigma > 0:
                s = cfg.blur_sigma
                k = 2 * math.ceil(2 * s) + 1
                grad = gaussian_blur2d(grad, (k, k), (s, s), border_type="replicate")
            l1 = grad.abs().mean().clamp_min(1e-30)
            velocity = cfg.momentum * velocity + grad / l1
            if cfg.step == "sign":
                move = velocity.sign()
            else:
                move = (velocity / velocity.square().mean().sqrt().clamp_min(1e-30)).clamp(-2, 2)
            x = x.detach() - cfg.alpha * move
            x = (x0 + (x - x0).clamp(-cfg.eps, cfg.eps)).clamp(0, 1)
        if steps % cfg.check_every == 0 or steps == cfg.steps:
            t = time.perf_counter()
            adv = read_panel(readings, _to_uint8(x), channels)
            ok = (
                brisque_protected(adv, margin=cfg.stop_margin)
                if kind == "brisque"
                else classifier_protected(adv, orig_panel)
            )
            check_time += time.perf_counter() - t
            if all(ok.values()):
                stopped = True
                break
    return Outcome(_to_uint8(x), steps, time.perf_counter() - start, check_time, stopped)
