"""Shared fixtures: real sample photos, and torch kept to this machine's 2 cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from camo_engine.samples import sample_paths
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """The bundled sample photos as (H, W, 3) uint8 arrays, by file stem."""
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sample_paths()}


@pytest.fixture(scope="session")
def small_photos(photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The sample photos downscaled to about 160 px on the long side, for fast attack tests."""
    out = []
    for rgb in photos.values():
        im = Image.fromarray(rgb)
        im.thumbnail((160, 160), Image.Resampling.LANCZOS)
        out.append(np.asarray(im))
    return out
