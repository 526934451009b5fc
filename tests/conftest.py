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


@pytest.fixture
def attack_fails_on(monkeypatch):
    """``attack_fails_on((h, w))`` makes every batch step raise "cannot step this one" for
    photos of that shape (as the gradient blur once did on a 1x1 photo)."""
    from camo_engine.attack import IFGSM

    views = IFGSM._views_for_step

    def patch(shape: tuple[int, int]) -> None:
        def fragile(self, item):
            if tuple(item.x.shape[1:]) == tuple(shape):
                raise RuntimeError("cannot step this one")
            return views(self, item)

        monkeypatch.setattr(IFGSM, "_views_for_step", fragile)

    return patch
