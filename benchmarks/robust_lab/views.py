"""Evaluation views for the robustness study (issue 12): real channels and real readings.

A *view* is a channel (what happens to the photo after it is shared: Pillow JPEG/WebP
encode+decode, Pillow resizes) followed by a reading (how a deployment prepares the model input:
BRISQUE at native resolution or on the old fixed 512x384 downscale; a classifier's full-frame
squash or short-side-256 + centre crop 224 through torchvision transforms on PIL images).
Only real codecs and resizers here: these define the verdicts.  The differentiable stand-ins
used for gradients live in ``eot.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from camo_engine.victims.brisque import GRAY_WEIGHTS, Brisque
from camo_engine.victims.efficientnet import EfficientNetLite0

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def encode_decode(rgb: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    """Pillow encode as JPEG (4:2:0, Pillow's default) or WebP at ``quality``, then decode."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"))


def pil_resize(rgb: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
    """Pillow resize to (h, w) with a named kernel (Pillow antialiases every kernel)."""
    h, w = size
    return np.asarray(Image.fromarray(rgb).resize((w, h), RESAMPLE[kernel]))


@dataclass(frozen=True)
class Channel:
    """A real channel: optional downscale (by ``scale`` or to ``long_side`` when larger), then
    an optional re-encode.  Its differentiable stand-in reads the same fields."""

    name: str
    scale: float = 1.0
    long_side: int | None = None
    kernel: str = "bicubic"
    fmt: str | None = None  # "JPEG" | "WEBP" | None (as written, lossless)
    quality: int = 90

    def size(self, h: int, w: int) -> tuple[int, int]:
        s = self.scale
        if self.long_side is not None and max(h, w) > self.long_side:
            s = self.long_side / max(h, w)
        return (h, w) if s == 1.0 else (max(1, round(h * s)), max(1, round(w * s)))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        size = self.size(*rgb.shape[:2])
        if size != rgb.shape[:2]:
            rgb = pil_resize(rgb, size, self.kernel)
        return rgb if self.fmt is None else encode_decode(rgb, self.fmt, self.quality)


PANEL_CHANNELS = {
    "medium": (
        Channel("as_written"),
        Channel("jpeg90", fmt="JPEG", quality=90),
        Channel("jpeg75", fmt="JPEG", quality=75),
        Channel("ls1080_jpeg85", long_side=1080, kernel="lanczos", fmt="JPEG", quality=85),
        Channel("half_jpeg85", scale=0.5, kernel="bicubic", fmt="JPEG", quality=85),
    ),
}
PANEL_CHANNELS["high"] = PANEL_CHANNELS["medium"] + (
    Channel("jpeg65", fmt="JPEG", quality=65),
    Channel("ls640_jpeg80", long_side=640, kernel="lanczos", fmt="JPEG", quality=80),
    Channel("webp75", fmt="WEBP", quality=75),
    Channel("half_jpeg70", scale=0.5, kernel="bilinear", fmt="JPEG", quality=70),
)
# Never used for gradients nor for early stop: a check that the recipe is not tuned to the panel.
PANEL_CHANNELS["heldout"] = (
    Channel("jpeg80", fmt="JPEG", quality=80),
    Channel("x0.6_bilinear_jpeg80", scale=0.6, kernel="bilinear", fmt="JPEG", quality=80),
    Channel("ls512_lanczos_jpeg85", long_side=512, kernel="lanczos", fmt="JPEG", quality=85),
    Channel("x0.75_lanczos_webp80", scale=0.75, kernel="lanczos", fmt="WEBP", quality=80),
)


def _gray(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb)).float().div(255).permute(2, 0, 1)
    r, g, b = GRAY_WEIGHTS
    return (r * x[0] + g * x[1] + b * x[2])[None, None]


class BrisqueReadings:
    """BRISQUE scores of uint8 photos: at native resolution, and the engine's old 512x384 view."""

    names = ("native", "fixed512")

    def __init__(self) -> None:
        self.model = Brisque().eval()

    @torch.no_grad()
    def read(self, rgb: np.ndarray) -> dict[str, float]:
        native = float(self.model.network(_gray(rgb)))
        x = torch.from_numpy(np.array(rgb)).float().div(255).permute(2, 0, 1)
        fixed = float(self.model.network(self.model.preprocess(x)[None]))
        return {"native": native, "fixed512": fixed}


def _classifier_transform(kind: str, kernel: str) -> Callable:
    mode = InterpolationMode.BILINEAR if kernel == "bilinear" else InterpolationMode.BICUBIC
    geometry = [T.Resize((224, 224), mode)] if kind == "squash" else [
        T.Resize(256, mode),
        T.CenterCrop(224),
    ]
    return T.Compose([*geometry, T.PILToTensor()])


class ClassifierReadings:
    """EfficientNet-Lite0 top-1 under torchvision preprocessing of PIL images."""

    names = ("squash_bilinear", "squash_bicubic", "cc256_bilinear", "cc256_bicubic")

    def __init__(self, victim: EfficientNetLite0) -> None:
        self.victim = victim
        self.transforms = {n: _classifier_transform(*n.split("_")) for n in self.names}

    @torch.no_grad()
    def read(self, rgb: np.ndarray) -> dict[str, int]:
        im = Image.fromarray(rgb)
        batch = torch.stack([t(im).float() for t in self.transforms.values()])
        logits = self.victim.network((batch - 127) / 128)
        return dict(zip(self.names, logits.argmax(1).tolist()))


def read_panel(readings, rgb: np.ndarray, channels: tuple[Channel, ...]) -> dict[str, float]:
    """{"channel/reading": value} for every view of ``channels`` x readings."""
    out = {}
    for ch in channels:
        for name, value in readings.read(ch(rgb)).items():
            out[f"{ch.name}/{name}"] = value
    return out


def brisque_protected(adv: dict, threshold: float = 50.0, margin: float = 0.0) -> dict[str, bool]:
    return {k: v >= threshold + margin for k, v in adv.items()}


def classifier_protected(adv: dict, orig: dict) -> dict[str, bool]:
    """Top-1 of the attacked view is neither the original's top-1 through the same view nor
    the original's clean (as written) top-1 under the same reading."""
    return {
        k: v != orig[k] and v != orig[f"as_written/{k.split('/')[1]}"] for k, v in adv.items()
    }


def alone_changes(kind: str, orig: dict, threshold: float = 50.0) -> dict[str, bool]:
    """Does the channel alone (on the clean photo) already change the verdict of each view?"""
    if kind == "brisque":
        return {k: v >= threshold for k, v in orig.items()}
    return {k: v != orig[f"as_written/{k.split('/')[1]}"] for k, v in orig.items()}


def judge(kind: str, readings, rgb: np.ndarray, out: np.ndarray, channels) -> dict:
    """Every view's reading of the original and of the protected photo, and per view whether
    it is protected and whether the channel alone changes the verdict."""
    orig = read_panel(readings, rgb, channels)
    adv = read_panel(readings, out, channels)
    ok = brisque_protected(adv) if kind == "brisque" else classifier_protected(adv, orig)
    return {"protected": ok, "alone": alone_changes(kind, orig), "orig": orig, "adv": adv}
