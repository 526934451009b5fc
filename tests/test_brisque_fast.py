"""The fused BRISQUE kernel (camo_engine.kernels.brisque) against the plain torch formulation it
replaces: moment sums and their gradients in float64, banding and threads, photos of mixed sizes,
and the victim at native resolution on the sample photos and on attacked photos written to disk,
read back, and also scored by the independent float64 reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.flop_counter import FlopCounterMode

from brisque_reference import score as reference_score
from camo_engine import IFGSM, AttackConfig
from camo_engine.backends.torch_backend import TorchBackend
from camo_engine.export.check import FP32_ERROR_FACTOR, MAX_REL_ERR, relative_error, sign_agreement
from camo_engine.kernels.brisque import mscn_moment_sums, plain_formulation, runs_eagerly, weighted_channels
from camo_engine.victims.brisque import GRAY_WEIGHTS, MSCN_SPEC, Brisque

# Scores: the tolerance against today's (plain, fp32) victim and the exact (fp64) one.
SCORE_TOL = 0.01


@pytest.fixture(scope="module")
def fused() -> Brisque:
    return Brisque(long_side=None, short_side=None).eval()


@pytest.fixture(scope="module")
def plain() -> Brisque:
    return Brisque(long_side=None, short_side=None, fused=False).eval()


@pytest.fixture(scope="module")
def exact() -> Brisque:
    return Brisque(long_side=None, short_side=None, fused=False).double().eval()


def gray_of(victim: Brisque, rgb: np.ndarray) -> torch.Tensor:
    """(1, 1, h, w) float32 grey of an (h, w, 3) uint8 photo, as ``preprocess`` makes it."""
    return victim.preprocess(torch.tensor(rgb).permute(2, 0, 1).float() / 255)[None]


def grad_of(victim: Brisque, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, d score / d gray) of a (1, 1, h, w) batch, in the batch's precision."""
    x = gray.detach().clone().requires_grad_(True)
    score = victim.network(x)
    (grad,) = torch.autograd.grad(score.sum(), x)
    return score.detach(), grad


def sums_and_grad(images, weights: torch.Tensor, **options) -> tuple[torch.Tensor, list]:
    """Sums of ``images`` and the gradient of ``(weights * sums).sum()`` for each image."""
    leaves = [im.detach().clone().requires_grad_(True) for im in images]
    sums = mscn_moment_sums(leaves, MSCN_SPEC, **options)
    return sums.detach(), list(torch.autograd.grad((sums * weights).sum(), leaves))


def plain_sums(plain: Brisque, gray: torch.Tensor) -> torch.Tensor:
    return plain.double()._moment_sums(gray[None, None].double())[0]


# Tiny ones (down to 2x3: BRISQUE of a 2-row photo is NaN in both) and odd sizes for the borders,
# the replicated edges of the half scale and bands shorter than the blur.
@pytest.mark.parametrize("size", [(2, 3), (3, 3), (7, 8), (9, 11), (40, 23), (64, 81)])
def test_sums_and_gradient_match_plain_formulation_in_float64(size: tuple[int, int]) -> None:
    plain = Brisque(fused=False)
    gen = torch.Generator().manual_seed(size[0] * 100 + size[1])
    # Smooth ramps plus noise: flat areas (tiny local variance) and sign changes everywhere.
    gray = (torch.rand(size, generator=gen, dtype=torch.float64) * 0.2 + torch.linspace(0, 0.7, size[1])).clamp(0, 1)
    weights = torch.randn(1, 2, 5, 4, generator=gen, dtype=torch.float64)
    weights[..., 0] = 0  # the count of negatives has no gradient in either

    sums, (grad,) = sums_and_grad([gray], weights)
    x = gray.clone().requires_grad_(True)
    expected = plain_sums(plain, x)
    (expected_grad,) = torch.autograd.grad((expected * weights[0]).nan_to_num().sum(), x)

    torch.testing.assert_close(sums[0], expected.detach(), rtol=1e-12, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12 * float(expected_grad.abs().max()))


def test_bands_and_threads_change_no_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    gray = torch.rand(70, 53, generator=gen)
    weights = torch.randn(1, 2, 5, 4, generator=gen)
    reference = sums_and_grad([gray], weights, band_rows=70, threads=1)
    for band_rows, threads in [(1, 2), (3, 3), (8, 2), (33, 1), (None, 2), (None, 3)]:
        sums, grads = sums_and_grad([gray], weights, band_rows=band_rows, threads=threads)
        assert torch.equal(sums, reference[0]), (band_rows, threads)
        assert torch.equal(grads[0], reference[1][0]), (band_rows, threads)


def test_python_threads_give_the_openmp_threads_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where torch lends no OpenMP threads the bands run on Python threads: the same bits."""
    from camo_engine.kernels import brisque as kernel

    gen = torch.Generator().manual_seed(2)
    images = [torch.rand(70, 53, generator=gen, dtype=torch.float64), torch.rand(2, 45, 31, generator=gen)]
    weights = torch.randn(3, 2, 5, 4, generator=gen)
    for dtype_images in (images[:1], images[1:]):
        w = weights[: sum(im.ndim - 1 for im in dtype_images)].to(dtype_images[0].dtype)
        omp = sums_and_grad(dtype_images, w, band_rows=8, threads=2)
        monkeypatch.setattr(kernel, "_omp_parallel", lambda: None)
        threads = sums_and_grad(dtype_images, w, band_rows=8, threads=2)
        monkeypatch.undo()
        assert torch.equal(omp[0], threads[0])
        assert all(torch.equal(a, b) for a, b in zip(omp[1], threads[1]))


def test_mixed_sizes_in_one_call_equal_separate_calls() -> None:
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(31, 45, generator=gen), torch.rand(2, 64, 20, generator=gen), torch.rand(9, 9, generator=gen)]
    weights = torch.randn(4, 2, 5, 4, generator=gen)
    sums, grads = sums_and_grad(images, weights)
    alone = [sums_and_grad([im], weights[i : i + im.ndim - 1]) for i, im in zip((0, 1, 3), images)]
    assert torch.equal(sums, torch.cat([s for s, _ in alone]))
    for grad, (_, (expected,)) in zip(grads, alone):
        assert torch.equal(grad, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grey_conversion_is_bit_identical_to_the_torch_formula(dtype: torch.dtype) -> None:
    image = torch.rand(3, 37, 51, generator=torch.Generator().manual_seed(4), dtype=dtype)
    if dtype == torch.float64:  # channels last, as permute(2, 0, 1) of a decoded photo gives
        image = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    d_out = torch.randn(1, 37, 51, generator=torch.Generator().manual_seed(5), dtype=dtype)
    r, g, b = GRAY_WEIGHTS
    results = []
    for convert in (lambda x: weighted_channels(x, GRAY_WEIGHTS), lambda x: (r * x[0] + g * x[1] + b * x[2])[None]):
        x = image.clone().requires_grad_(True)
        out = convert(x)
        results.append((out.detach(), torch.autograd.grad(out, x, d_out)[0]))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"images\[1\].*float64"):
        mscn_moment_sums([torch.rand(8, 8, dtype=torch.float64), torch.rand(8, 8)], MSCN_SPEC)
    with pytest.raises(ValueError, match="float32 or float64"):
        mscn_moment_sums(torch.rand(8, 8, dtype=torch.float16), MSCN_SPEC)
    with pytest.raises(ValueError, match="empty"):
        mscn_moment_sums(torch.rand(0, 8), MSCN_SPEC)


def test_native_geometry_is_the_default() -> None:
    fixed, native = Brisque(long_side=512, short_side=384), Brisque()
    assert fixed.geometry(3000, 4000) == (384, 512) and not fixed.native
    assert native.geometry(3000, 4000) == (3000, 4000) and native.native
    assert native.preprocess(torch.rand(3, 41, 29)).shape == (1, 41, 29)
    with pytest.raises(ValueError, match="both long_side and short_side"):
        Brisque(long_side=512)


def test_network_mixed_equals_network_per_image(fused: Brisque) -> None:
    gen = torch.Generator().manual_seed(2)
    inputs = [torch.rand(1, 50, 70, generator=gen), torch.rand(1, 33, 90, generator=gen), torch.rand(1, 120, 64, generator=gen)]
    alone = torch.cat([fused.network(x[None]) for x in inputs])
    torch.testing.assert_close(fused.network_mixed(inputs), alone, rtol=0, atol=1e-4)
    torch.testing.assert_close(Brisque(fused=False).network_mixed(inputs), alone, rtol=0, atol=1e-2)


def test_tracing_and_dispatch_modes_see_the_plain_formulation() -> None:
    """Export (make_fx, torch.export) and FLOP counting need torch ops, not the kernel."""
    victim = Brisque(long_side=48, short_side=36)
    batch = torch.rand(2, 1, 36, 48, generator=torch.Generator().manual_seed(3))
    assert runs_eagerly(batch)
    with FlopCounterMode(display=False) as flops:
        assert not runs_eagerly(batch)
        victim.network(batch)
    assert flops.get_total_flops() > 0  # the convolutions of the plain formulation
    # Weights are real tensors closed over, as in export/trace.py.
    with plain_formulation():  # what export/check.py holds the exported graphs to
        assert not runs_eagerly(batch)
        assert torch.equal(victim.network(batch), Brisque(long_side=48, short_side=36, fused=False).network(batch))
    assert runs_eagerly(batch)
    graph = make_fx(lambda images: victim.network(images), tracing_mode="symbolic", _allow_non_fake_inputs=True)(batch)
    targets = {str(node.target) for node in graph.graph.nodes}
    assert any("convolution" in t for t in targets) and not any("MomentSums" in t for t in targets)
    torch.testing.assert_close(graph(batch), victim.network(batch), rtol=0, atol=SCORE_TOL)


def assert_like_today(
    name: str, fused: Brisque, plain: Brisque, exact: Brisque, gray: torch.Tensor, gradient: bool
) -> None:
    """Scores within SCORE_TOL of today's plain fp32 victim and of the exact fp64 one; the
    gradient as close to the fp64 one as export/check.py asks of any fp32 graph."""
    with torch.no_grad():
        score, today, best = fused.network(gray), plain.network(gray), exact.network(gray.double())
    assert abs(float(score) - float(today)) <= SCORE_TOL, (name, float(score), float(today))
    assert abs(float(score) - float(best)) <= SCORE_TOL, (name, float(score), float(best))
    if gradient:
        _, grad = grad_of(fused, gray)
        _, today_grad = grad_of(plain, gray)
        _, best_grad = grad_of(exact, gray.double())
        limit = max(MAX_REL_ERR, FP32_ERROR_FACTOR * relative_error(today_grad, best_grad))
        assert relative_error(grad, best_grad) <= limit, name
        assert sign_agreement(grad, best_grad) >= 0.999, name


@pytest.mark.slow
def test_sample_photos_at_native_resolution(
    photos: dict[str, np.ndarray], fused: Brisque, plain: Brisque, exact: Brisque
) -> None:
    # Gradients on the four smallest (float64 autograd of the plain formulation is the slow part).
    by_size = sorted(photos, key=lambda name: photos[name].size)
    for name in by_size:
        gray = gray_of(fused, photos[name])
        assert_like_today(name, fused, plain, exact, gray, gradient=name in by_size[:4])


@pytest.mark.slow
def test_attacked_photos_written_and_read_back(
    tmp_path, photos: dict[str, np.ndarray], fused: Brisque, plain: Brisque, exact: Brisque
) -> None:
    """A few I-FGSM steps against the native fused victim, written as PNG and read back: the
    victims agree on those pixels, and so does the independent float64 reference."""
    names = ["chelsea", "coffee", "rocket"]
    originals = []
    for name in names:
        im = Image.fromarray(photos[name])
        im.thumbnail((320, 320), Image.Resampling.LANCZOS)
        originals.append(np.asarray(im))
    images = [torch.tensor(rgb).permute(2, 0, 1).float() / 255 for rgb in originals]
    attack = IFGSM(fused, TorchBackend(fused), AttackConfig(steps=3, eps=8 / 255, alpha=2 / 255))
    for result in attack.run(images):
        assert result.steps > 0
        path = tmp_path / f"{names[result.index]}.png"
        Image.fromarray(result.rgb).save(path)
        rgb = np.asarray(Image.open(path).convert("RGB"))
        assert np.abs(rgb.astype(int) - originals[result.index]).max() > 0  # attacked
        gray = gray_of(fused, rgb)
        assert_like_today(path.name, fused, plain, exact, gray, gradient=True)
        ours = float(fused(torch.tensor(rgb).permute(2, 0, 1).float()[None] / 255))
        assert ours == pytest.approx(reference_score(rgb / 255.0), abs=0.05), path.name


MEMORY_SCRIPT = """
import resource, torch
from camo_engine.victims.brisque import Brisque
torch.set_num_threads(2)
x = torch.rand(3, 3000, 4000, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
Brisque(long_side=None, short_side=None)(x[None]).sum().backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
def test_twelve_megapixel_step_memory_is_bounded() -> None:
    """Forward + input gradient of a 12 MP photo: the kernel adds about the grey image, its
    gradient and the quarter-size second scale, not the dozens of full-size maps of autograd."""
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    grown = int(run.stdout.split()[-1])
    # Needed anyway: the input's gradient (144 MB), the grey image and its gradient (48 MB each).
    assert grown < 600 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"
