"""JPEG encode and decode, and pixel conversion: the written file and the ``jpeg:Q`` channel.

Sharing platforms re-save uploads as baseline JPEG.  A JPEG output file is written with the
same encoder settings as every ``jpeg:Q`` view re-encodes with, so the verdict starts from
exactly the pixels the written file decodes to.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# Pillow's defaults at a given quality: 4:2:0 chroma subsampling, standard tables, no optimise
# pass.  Optimise/progressive change the file size, not the decoded pixels.
SUBSAMPLING = "4:2:0"


def encode(rgb: np.ndarray, quality: int, **extra: object) -> bytes:
    """Encode an (H, W, 3) uint8 array as JPEG bytes; ``extra`` carries metadata (exif, icc)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(
        buf, format="JPEG", quality=quality, subsampling=SUBSAMPLING, **extra
    )
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an (H, W, 3) uint8 array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """What a platform that re-saves at ``quality`` shows of this image."""
    return decode(encode(rgb, quality))


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] to (H, W, 3) uint8, rounding to nearest as image writers do."""
    rgb = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    # Contiguous: Pillow copies a strided array element by element.
    return rgb.permute(1, 2, 0).contiguous().numpy()


def to_float(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 to a contiguous (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).contiguous().float().div_(255)
