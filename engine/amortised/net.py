"""The amortised protector: a small U-Net that protects a photo in one forward pass.

The 2020 HCMUS "vanilla end-to-end" run trains an image-to-image U-Net whose output fools the
victim; here the net is bounded by construction, so it is a drop-in start for I-FGSM:

    protected = clamp(centre + eps * tanh(residual(x)), 0, 1),   |protected - centre| <= eps

``centre`` is the photo itself, or with ``enhance=True`` the net's own enhancement
``clamp(x + tanh(enhancement(x)), 0, 1)`` (a second head, trained toward an enhancer's output:
the paper's "one network that enhances and protects").  The enhancement head starts at zero
(the identity); the perturbation head at the default random init, a small random start whose
gradient reaches every layer from the first step (a zero head learns far slower).

The net is fully convolutional: ``forward`` runs at any (H, W) at full resolution (padded to a
multiple of the down-sampling factor and cropped back).  In protection it runs at its *working
resolution* instead (:func:`amortised_starts`): a photo whose short side exceeds
``working_side`` is downscaled to it, and the heads are upsampled back to full size.  Why:

* victims see a fixed geometry (EfficientNet: a 224 px centre crop), so a pattern learned at
  one scale is averaged away when a 12 MP photo is shrunk 12-fold; at the working side (the
  training crop side) the victim sees the pattern at the scale it was trained at;
* cost: the net's work grows with the pixel count (benchmarks/NOTES.md, "amortised net cost").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_WIDTHS = (16, 32, 64)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class AmortisedNet(nn.Module):
    """U-Net (max-pool down, bilinear up, concatenated skips) with bounded output heads."""

    def __init__(
        self,
        eps: float = 8 / 255,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        enhance: bool = False,
        working_side: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 < eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {eps}")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {list(widths)}")
        self.eps = float(eps)
        self.widths = tuple(int(w) for w in widths)
        self.enhance = bool(enhance)
        self.working_side = None if working_side is None else int(working_side)
        self.multiple = 2 ** (len(self.widths) - 1)
        ins = (3, *self.widths[:-1])
        self.down = nn.ModuleList(_block(i, o) for i, o in zip(ins, self.widths))
        self.up = nn.ModuleList(
            _block(deep + skip, skip) for deep, skip in zip(self.widths[1:], self.widths[:-1])
        )
        self.head = nn.Conv2d(self.widths[0], 6 if self.enhance else 3, 1)
        with torch.no_grad():
            self.head.weight[3:] = 0
            self.head.bias[3:] = 0

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this architecture (stored in checkpoints)."""
        return {
            "eps": self.eps,
            "widths": list(self.widths),
            "enhance": self.enhance,
            "working_side": self.working_side,
        }

    def heads(self, x: Tensor) -> Tensor:
        """Raw head output (B, 3 or 6, H, W) for a (B, 3, H, W) batch of any size."""
        h, w = x.shape[-2:]
        # Replicate, not reflect: reflect fails on sides shorter than the pad.
        y = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                skips.append(y)
                y = F.max_pool2d(y, 2)
            y = block(y)
        for block in reversed(self.up):
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skips.pop()], 1))
        return self.head(y)[..., :h, :w]

    def apply_heads(self, x: Tensor, heads: Tensor) -> tuple[Tensor, Tensor]:
        """(centre, protected) for ``x`` from head outputs of the same size."""
        centre = x
        if self.enhance:
            centre = (x + torch.tanh(heads[:, 3:])).clamp(0, 1)
        return centre, (centre + self.eps * torch.tanh(heads[:, :3])).clamp(0, 1)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(centre, protected): the eps-ball's centre and the protected photo."""
        return self.apply_heads(x, self.heads(x))

    def forward(self, x: Tensor) -> Tensor:
        """The protected batch, within ``eps`` of the centre and in [0, 1]."""
        return self.split(x)[1]


# -- use in protection ----------------------------------------------------------------------
def amortised_starts(
    model: AmortisedNet, images: Iterable[Tensor], full_resolution: bool = False
) -> Iterator[tuple[Tensor, Tensor]]:
    """(centre, init) per (3, H, W) image, lazily: one no-grad forward pass per image.

    ``centre`` is the image itself unless the net enhances.  The net runs at its working
    resolution (module docstring) unless ``full_resolution``; the bound |init - centre| <= eps
    holds at full resolution either way.
    """
    side = None if full_resolution else model.working_side
    for image in images:
        x = image[None]
        with torch.inference_mode():
            small = _downscale(x, side)
            heads = model.heads(small)
            if small is not x:
                heads = F.interpolate(heads, size=x.shape[-2:], mode="bilinear", align_corners=False)
            centre, init = model.apply_heads(x, heads)
        # Inference tensors cannot enter autograd later; clones can.
        yield centre[0].clone(), init[0].clone()


def amortised_inits(
    model: AmortisedNet, images: Iterable[Tensor], full_resolution: bool = False
) -> Iterator[Tensor]:
    """I-FGSM start points for ``IFGSM.run(images, inits=...)`` (a net without enhancement)."""
    if model.enhance:
        raise ValueError("this protector enhances: use amortised_starts() for centres and inits")
    return (init for _, init in amortised_starts(model, images, full_resolution))


def _downscale(x: Tensor, short_side: int | None) -> Tensor:
    """``x`` with its short side brought down to ``short_side`` (antialiased), if larger."""
    h, w = x.shape[-2:]
    if short_side is None or min(h, w) <= short_side:
        return x
    k = short_side / min(h, w)
    size = (max(1, round(h * k)), max(1, round(w * k)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
