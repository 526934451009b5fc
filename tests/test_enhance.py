"""Every enhancer's contract, the registry and chains, ONNX export, and the smaller enhancers."""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from camo_engine.enhance import (
    REGISTRY,
    Chain,
    OnnxEnhancer,
    adjust_saliency_saturation,
    adjust_texture,
    build_enhancer,
    noise_image,
    parse_enhancers,
    spectral_residual,
)
from camo_engine.io import jpeg
from onnx import TensorProto, helper

BUILT_IN = [name for name in REGISTRY if name != "onnx"]
DIFFERENTIABLE = [name for name in BUILT_IN if REGISTRY[name].differentiable]


@pytest.fixture(scope="module")
def batch(small_photos: list[np.ndarray]) -> torch.Tensor:
    """Three sample photos cropped to one 96x128 size."""
    return torch.stack([jpeg.to_float(p[:96, :128]) for p in small_photos[:3]])


def test_registry_lists_names_descriptions_and_differentiability() -> None:
    assert set(REGISTRY) == {
        "pillow",
        "dhe",
        "saliency-saturation",
        "texture",
        "lowlight",
        "stylize",
        "onnx",
    }
    assert set(DIFFERENTIABLE) == {"pillow", "dhe", "saliency-saturation", "texture", "lowlight"}
    for name, info in REGISTRY.items():
        assert info.name == name and info.description


@pytest.mark.parametrize("name", BUILT_IN)
def test_contract_shape_range_and_batch_independence(name: str, batch: torch.Tensor) -> None:
    enhancer = build_enhancer(name)
    with torch.no_grad():
        out = enhancer(batch)
        one_by_one = torch.cat([enhancer(image[None]) for image in batch])
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, batch)
    torch.testing.assert_close(out, one_by_one, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.rand(3, 32, 32), ValueError),
        (torch.rand(1, 4, 32, 32), ValueError),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError),
    ],
)
def test_bad_batches_are_refused(name: str, bad: torch.Tensor, error: type) -> None:
    with pytest.raises(error, match="expected"):
        build_enhancer(name)(bad)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradients_reach_the_pixels(name: str, batch: torch.Tensor) -> None:
    x = batch[:1].clone().requires_grad_(True)
    build_enhancer(name)(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_onnx_export_with_dynamic_batch(name: str, batch: torch.Tensor, tmp_path: Path) -> None:
    enhancer = build_enhancer(name).eval()
    small = batch[..., :48, :64].contiguous()
    program = torch.onnx.export(
        enhancer, (small[:2],), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    program.save(tmp_path / "enhancer.onnx")
    session = ort.InferenceSession(
        str(tmp_path / "enhancer.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {session.get_inputs()[0].name: small.numpy()})[0]  # batch 3, not 2
    with torch.no_grad():
        np.testing.assert_allclose(got, enhancer(small).numpy(), atol=1e-4, rtol=0)


# --- registry syntax and chains ------------------------------------------------------------


def test_chain_applies_in_order_and_reports_differentiability(batch: torch.Tensor) -> None:
    chain = parse_enhancers("texture:alpha=0.1:noise=fractal:seed=3, pillow")
    assert isinstance(chain, Chain) and chain.differentiable and chain.name == "texture,pillow"
    texture, pillow = chain.parts
    assert (texture.alpha, texture.noise, texture.seed) == (0.1, "fractal", 3)
    with torch.no_grad():
        torch.testing.assert_close(chain(batch), pillow(texture(batch)))
    assert not parse_enhancers("pillow,stylize").differentiable


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sepia", "unknown enhancer 'sepia'"),
        ("texture:alpha=strong", "takes a float"),
        ("texture:strength=1", "key in alpha, noise, mode, seed"),
        ("texture:noise=plaid", "unknown noise"),
        ("pillow:1.5", "bad option"),
        ("onnx:", "model path"),
        (" , ", "no enhancer"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_enhancers(spec)


# --- saliency-saturation ---------------------------------------------------------------------


def test_spectral_residual_finds_an_odd_patch() -> None:
    """A small red square on a grey-textured field is where the saliency peaks."""
    gen = torch.Generator().manual_seed(0)
    image = 0.5 + 0.02 * torch.randn(1, 1, 128, 128, generator=gen).expand(1, 3, 128, 128)
    image = image.clone()
    image[:, :, 80:92, 30:42] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    saliency = spectral_residual(image)[0, 0]
    y, x = divmod(int(saliency.argmax()), 128)
    assert 70 <= y <= 100 and 20 <= x <= 52
    assert saliency[80:92, 30:42].mean() > 3 * saliency.mean()


def test_saturation_rises_on_salient_pixels_and_falls_elsewhere(batch: torch.Tensor) -> None:
    with torch.no_grad():
        out = adjust_saliency_saturation(batch)
        before = kornia.color.rgb_to_hsv(batch)[:, 1]
        after = kornia.color.rgb_to_hsv(out)[:, 1]
        saliency = spectral_residual(batch)[:, 0]
    ratio = after / before.clamp_min(1e-3)
    colourful = before > 0.2
    high = colourful & (saliency > 0.8)
    low = colourful & (saliency < 0.05)
    assert ratio[high].mean() > 1.1 and ratio[low].mean() < 0.95


# --- texture ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "fractal", "film-grain"])
def test_noise_is_seeded_standardised_and_sized(kind: str) -> None:
    noise = noise_image(kind, 50, 70, seed=1)
    assert noise.shape == (50, 70) and noise.dtype == np.float32
    assert abs(noise.mean()) < 1e-5 and abs(noise.std() - 1) < 1e-4
    np.testing.assert_array_equal(noise, noise_image(kind, 50, 70, seed=1))
    assert not np.array_equal(noise, noise_image(kind, 50, 70, seed=2))


def test_texture_modes(batch: torch.Tensor) -> None:
    torch.testing.assert_close(adjust_texture(batch, alpha=0.0), batch)
    out = adjust_texture(batch, alpha=0.05, noise="gaussian", mode="value")
    # V' = V + alpha * eps with hue and saturation kept: channel ratios are unchanged.
    eps = torch.from_numpy(noise_image("gaussian", 96, 128).copy())
    value = batch.amax(dim=1)
    expected_value = (value + 0.05 * eps).clamp(0, 1)
    torch.testing.assert_close(out.amax(dim=1), expected_value, atol=1e-6, rtol=0)
    keep = (value > 0.2) & (expected_value < 1)
    ratio = (out / out.amax(dim=1, keepdim=True)) - (batch / value[:, None])
    assert ratio.permute(1, 0, 2, 3)[:, keep].abs().max() < 1e-4


# --- stylize and a user's ONNX model --------------------------------------------------------


def test_stylize_is_flagged_non_differentiable(batch: torch.Tensor) -> None:
    enhancer = build_enhancer("stylize:sigma_s=30")
    assert not enhancer.differentiable and enhancer.sigma_s == 30.0
    assert not enhancer(batch.clone().requires_grad_(True)).requires_grad


def write_sqrt_model(path: Path, batch_dim: int | str) -> Path:
    """A tiny image-to-image ONNX model: y = sqrt(x)."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch_dim, 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch_dim, 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Sqrt", ["pixels"], ["out"])], "sqrt", [x], [y])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path
    )
    return path


@pytest.mark.parametrize("batch_dim", ["n", 1])
def test_onnx_enhancer_runs_the_users_model(
    batch_dim: int | str, batch: torch.Tensor, tmp_path: Path
) -> None:
    path = write_sqrt_model(tmp_path / "sqrt.onnx", batch_dim)
    enhancer = parse_enhancers(f"onnx:{path}").parts[0]
    assert isinstance(enhancer, OnnxEnhancer) and not enhancer.differentiable
    torch.testing.assert_close(enhancer(batch), batch.sqrt())


def test_onnx_enhancer_pads_to_a_multiple(batch: torch.Tensor, tmp_path: Path) -> None:
    enhancer = OnnxEnhancer(write_sqrt_model(tmp_path / "sqrt.onnx", "n"), multiple=7)
    odd = batch[..., :50, :61]
    torch.testing.assert_close(enhancer(odd), odd.sqrt())


def test_onnx_enhancer_refuses_unusable_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxEnhancer(junk)
    with pytest.raises(FileNotFoundError):
        OnnxEnhancer(tmp_path / "missing.onnx")
    x = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 8])
    graph = helper.make_graph([helper.make_node("Relu", ["v"], ["y"])], "g", [x], [x])
    graph.output[0].name = "y"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
        tmp_path / "vec.onnx",
    )
    with pytest.raises(ValueError, match=r"one \(N, 3, H, W\) input"):
        OnnxEnhancer(tmp_path / "vec.onnx")
