"""Example batches in a victim's input space: the data graphs are traced and checked on."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..io import jpeg
from ..samples import sample_paths
from ..victims.base import Victim

Geometry = tuple[int, int]


def victim_geometries(victim: Victim) -> list[Geometry]:
    """The distinct input sizes of a victim whose geometry depends on orientation at most.

    A victim that reads photos at their own size (BRISQUE by default) has no fixed geometry to
    export: it is refused with the reason.
    """
    shapes = ((3, 4), (4, 3), (4, 4))
    geometries = {victim.geometry(h, w) for h, w in shapes}
    if geometries != {victim.geometry(10 * h, 10 * w) for h, w in shapes}:
        raise ValueError(
            f"victim {victim.name!r} reads each photo at its own size; ONNX graphs need a fixed "
            "input geometry (for BRISQUE: long_side=512, short_side=384)"
        )
    return sorted(geometries)


def sample_images(count: int | None = None) -> list[Tensor]:
    """The bundled sample photos as (3, H, W) float images in [0, 1]."""
    paths = sample_paths()[:count]
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(jpeg.to_float(np.asarray(im.convert("RGB"))))
    return images


def example_batch(victim: Victim, geometry: Geometry, size: int = 2) -> Tensor:
    """``size`` sample photos preprocessed to ``geometry``.

    A photo of the other orientation is transposed so that it lands on ``geometry``; the
    batch is filled up with seeded noise images if too few photos are installed.
    """
    batch = []
    for image in sample_images():
        if victim.geometry(*image.shape[1:]) != geometry:
            image = image.transpose(1, 2)
        if victim.geometry(*image.shape[1:]) == geometry:
            batch.append(victim.preprocess(image))
        if len(batch) == size:
            break
    generator = torch.Generator().manual_seed(0)
    while len(batch) < size:
        noise = torch.rand(3, *geometry, generator=generator)
        batch.append(victim.preprocess(noise))
    with torch.no_grad():
        return torch.stack(batch).detach()


def example_targets(victim: Victim, batch: Tensor) -> Tensor:
    """Attack targets as the attack builds them from the clean outputs."""
    with torch.no_grad():
        clean = victim.network(batch).float()
    return victim.reference(clean, clean)
