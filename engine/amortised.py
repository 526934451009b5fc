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
resolution* instead (:func:`protector_starts`): a photo whose short side exceeds
``working_side`` is downscaled to it, and the heads are upsampled back to full size.  Why:

* victims see a fixed geometry (EfficientNet: a 224 px centre crop), so a pattern learned at
  one scale is averaged away when a 12 MP photo is shrunk 12-fold; at the working side (the
  training crop side) the victim sees the pattern at the scale it was trained at;
* cost: about 28 kMAC per pixel at the default widths, i.e. minutes and ~7 GB for 12 MP.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .victims.checkpoint import CheckpointError, read_state_dict

FORMAT = "camo-engine-protector"
FORMAT_VERSION = 1
DEFAULT_WIDTHS = (16, 32, 64)
ONNX_TOLERANCE = 1e-4


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class ProtectorNet(nn.Module):
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
def protector_starts(
    model: ProtectorNet, images: Iterable[Tensor], full_resolution: bool = False
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


def protector_inits(
    model: ProtectorNet, images: Iterable[Tensor], full_resolution: bool = False
) -> Iterator[Tensor]:
    """I-FGSM start points for ``IFGSM.run(images, inits=...)`` (a net without enhancement)."""
    if model.enhance:
        raise ValueError("this protector enhances: use protector_starts() for centres and inits")
    return (init for _, init in protector_starts(model, images, full_resolution))


def _downscale(x: Tensor, short_side: int | None) -> Tensor:
    """``x`` with its short side brought down to ``short_side`` (antialiased), if larger."""
    h, w = x.shape[-2:]
    if short_side is None or min(h, w) <= short_side:
        return x
    k = short_side / min(h, w)
    size = (max(1, round(h * k)), max(1, round(w * k)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


# -- checkpoints ------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Package versions worth recording next to trained weights."""
    out = {}
    for name in ("camo-engine", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def save_protector(model: ProtectorNet, path: Path | str, meta: dict[str, Any]) -> Path:
    """Write the weights, the architecture and ``meta`` (victim, training config, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": model.config,
            "meta": {**meta, "versions": versions()},
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def load_protector(path: Path | str) -> tuple[ProtectorNet, dict[str, Any]]:
    """The net (eval mode) and its meta dict; :class:`CheckpointError` names what is wrong."""
    path = Path(path)
    # read_state_dict checks the file and loads it safely (weights only); the header is read
    # again for the architecture and meta, which it drops.  The file is a few hundred kB.
    state = read_state_dict(path, prefix="")
    header = torch.load(path, map_location="cpu", weights_only=True)
    if header.get("format") != FORMAT:
        raise CheckpointError(path, f"not a camo-engine protector checkpoint (no {FORMAT!r} format tag)")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"protector format version {header.get('version')}, this build reads {FORMAT_VERSION}"
        )
    try:
        model = ProtectorNet(**header["config"])
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"weights do not fit the stored architecture ({exc})") from exc
    return model.eval(), dict(header.get("meta", {}))


def protector_for(source: ProtectorNet | Path | str, victim: str, eps: float) -> ProtectorNet:
    """The protector to run against ``victim`` at ``eps`` (eval mode), checked for both.

    A checkpoint must have been trained against ``victim``: its meta records the victim it was
    trained against.  A net passed in directly is taken at the caller's word for the victim.
    Either way its eps must be the attack's: a pattern learned for another ball would be
    clipped to this one (or leave part of it unused).
    """
    if isinstance(source, ProtectorNet):
        net = source
    else:
        path = Path(source)
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(path, "an ONNX export records no victim: give the .pt checkpoint")
        net, meta = load_protector(path)
        trained = str(meta.get("victim"))
        # A user ONNX victim is named by its file; the meta may hold the path given in training.
        if trained.startswith("onnx:"):
            trained = f"onnx:{Path(trained.removeprefix('onnx:')).name}"
        if trained != victim:
            raise CheckpointError(
                path,
                f"this protector was trained against {meta.get('victim')!r}, not {victim!r}; "
                f"train one with `camo-engine train-protector --victim {victim}`",
            )
    if abs(net.eps - eps) > 1e-9:
        raise ValueError(
            f"the protector was trained for eps {net.eps * 255:.4g}/255 but the attack's eps is "
            f"{eps * 255:.4g}/255: use the same eps"
        )
    return net.eval()


# -- ONNX ---------------------------------------------------------------------------------------
def export_protector_onnx(
    model: ProtectorNet, path: Path | str, check_size: tuple[int, int] = (37, 53)
) -> float:
    """Export ``forward`` (full resolution) with dynamic batch, height and width.

    Returns onnxruntime's max deviation from torch on a batch of 2 at ``check_size``, a size
    other than the traced one; beyond 1e-4 the export raises.  The working-resolution resize of
    :func:`protector_starts` is not in the graph: callers downscale large photos themselves.
    """
    import onnxruntime as ort  # only exporting pays for the import

    path = Path(path)
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, 64, 96, generator=gen)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=(dims,),
        input_names=["rgb"],
        output_names=["protected"],
        verbose=False,
    )
    program.save(str(path))
    probe = torch.rand(2, 3, *check_size, generator=gen)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"rgb": probe.numpy()})[0]
    with torch.no_grad():
        deviation = float(np.abs(got - model(probe).numpy()).max())
    if not deviation <= ONNX_TOLERANCE:
        raise RuntimeError(f"{path}: onnxruntime deviates from torch by {deviation:.2e}")
    return deviation
