"""The low-light network: the real bundled weights, and the package's own model code."""

from __future__ import annotations

import importlib.util
from importlib import metadata

import numpy as np
import pytest
import torch
from camo_engine.enhance import LowLight, enhance_low_light
from camo_engine.enhance.lowlight import WEIGHTS_SHA256, load_weights
from camo_engine.io import jpeg


def gradient_input() -> torch.Tensor:
    """A fixed dark 12x16 colour ramp."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 12), torch.linspace(0, 1, 16), indexing="ij")
    return torch.stack([0.3 * xx, 0.3 * yy, 0.15 * (xx + yy)])[None]


def test_weights_are_the_vendored_file() -> None:
    state = load_weights()
    assert set(state) == {f"conv{i}.{p}" for i in range(1, 8) for p in ("weight", "bias")}
    assert state["conv7.weight"].shape == (24, 64, 3, 3)
    assert len(WEIGHTS_SHA256) == 64


def test_brightens_a_darkened_photo(small_photos: list[np.ndarray]) -> None:
    dark = torch.stack([jpeg.to_float(p[:96, :96]) for p in small_photos[:3]]) * 0.3
    with torch.no_grad():
        out = LowLight()(dark)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (out.mean(dim=(1, 2, 3)) > dark.mean(dim=(1, 2, 3)) + 0.1).all()


def test_matches_values_from_the_package_model() -> None:
    """Numbers printed by neuro_low_light 0.1.0's own ZeroDCEPP on this input."""
    with torch.no_grad():
        out = enhance_low_light(gradient_input())[0]
    expected_mean = torch.tensor([0.515094, 0.503981, 0.637470])
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected_mean, atol=2e-6, rtol=0)
    torch.testing.assert_close(
        out[:, 3, 12], torch.tensor([0.778381, 0.455958, 0.755309]), atol=2e-6, rtol=0
    )
    torch.testing.assert_close(
        out[:, 11, 15], torch.tensor([0.469580, 0.453781, 0.506757]), atol=2e-6, rtol=0
    )


def test_matches_the_package_model_code() -> None:
    """When neuro-low-light is installed (``pip install --no-deps``), run its model.py directly.

    Only model.py is loaded (it imports torch alone); the package's __init__ pulls in cv2.
    """
    try:
        dist = metadata.distribution("neuro-low-light")
    except metadata.PackageNotFoundError:
        pytest.skip("neuro-low-light is not installed")
    spec = importlib.util.spec_from_file_location(
        "nll_model", dist.locate_file("neuro_low_light/model.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.ZeroDCEPP()
    checkpoint = torch.load(
        dist.locate_file("neuro_low_light/weights/best_model.pth"),
        map_location="cpu",
        weights_only=True,
    )
    reference.load_state_dict(checkpoint["model_state_dict"])
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0)) * 0.4
    with torch.no_grad():
        torch.testing.assert_close(LowLight()(x), reference.eval()(x)[0])


def test_gradient_reaches_the_pixels() -> None:
    x = gradient_input().requires_grad_(True)
    LowLight()(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
